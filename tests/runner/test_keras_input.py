"""The input knob (JobSpec ``input``): device-resident batches train as host batches do.

Real training on the CPU, on a learnable Fashion-MNIST stand-in in the real IDX
format (each class a bright band at its own rows), so that the loss falls from
ln 10 = 2.30 and the two trajectories can be compared: they differ only by the
batch order (Keras's shuffle against keras_input's permutation) and the random
initial weights, not by what is learnt.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.datasets_fixtures import write_idx
from tests.runner.runjob import job, of_type, run_job

SAMPLES = 640


def write_learnable_fashion_mnist(root: Path, n: int = SAMPLES) -> None:
    rng = np.random.RandomState(3)
    labels = rng.randint(0, 10, n).astype(np.uint8)
    images = rng.randint(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 + 2 * c:4 + 2 * c, :] = 255
    base = root / "fashion_mnist"
    write_idx(base / "train-images-idx3-ubyte.gz", images)
    write_idx(base / "train-labels-idx1-ubyte.gz", labels)
    write_idx(base / "t10k-images-idx3-ubyte.gz", images[:64])
    write_idx(base / "t10k-labels-idx1-ubyte.gz", labels[:64])


def _losses(tmp_path: Path, backend: str, input_: str | None, **extra) -> tuple[list[float], dict]:
    root = tmp_path / "data"
    if not root.exists():
        write_learnable_fashion_mnist(root)
    spec = job(backend, "mlp", "fashion_mnist", workload={"batch_size": 32, "epochs": 4, "samples": SAMPLES},
               **extra)
    spec["job_id"] = "t-input-%s-%s" % (backend, input_ or "default")
    if input_ is not None:
        spec["input"] = input_
    rc, messages, stderr = run_job(spec, tmp_path, dataset_root=root)
    assert rc == 0, stderr[-3000:]
    [result] = of_type(messages, "result")
    [run] = result["runs"]
    assert [e["batches"] for e in run["epochs"]] == [SAMPLES // 32] * 4
    return [e["loss"] for e in run["epochs"]], result["knobs"]


@pytest.mark.parametrize("backend", ["keras-jax", "keras-torch"])
def test_device_input_trains_as_host_input(tmp_path: Path, backend: str) -> None:
    host, host_knobs = _losses(tmp_path, backend, "host")
    device, device_knobs = _losses(tmp_path, backend, "device")
    assert host_knobs["input"].startswith("host: fit slices host arrays")
    assert device_knobs["input"].startswith("device-resident")
    for losses in (host, device):
        assert losses[0] < 2.0 and losses[-1] < 0.5 * losses[0], losses  # it learns
    # the same trajectory within what batch order and initial weights explain
    for h, d in zip(host, device):
        assert abs(h - d) <= 0.1 + 0.35 * h, (host, device)


def test_device_input_on_keras_tensorflow(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:  # found, not imported (see above: TF2_BEHAVIOR)
        pytest.skip("tensorflow is not installed")
    host, _ = _losses(tmp_path, "keras-tensorflow", None)
    device, knobs = _losses(tmp_path, "keras-tensorflow", "device")
    assert knobs["input"].startswith("tf.data from memory")
    for h, d in zip(host, device):
        assert abs(h - d) <= 0.1 + 0.35 * h, (host, device)


def test_keras_jax_data_parallel_shards_device_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23's CPU path: DataParallel over 2 virtual devices with the input sharded over them."""
    monkeypatch.setenv("EDGEBENCH_VIRTUAL_CPU_DEVICES", "1")
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    monkeypatch.setenv("XLA_FLAGS", flags.strip())
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    root = tmp_path / "data"
    write_learnable_fashion_mnist(root)
    spec = job("keras-jax", "mlp", "fashion_mnist", gpus=2, input="device",
               workload={"batch_size": 16, "epochs": 4, "samples": SAMPLES})
    rc, messages, stderr = run_job(spec, tmp_path, dataset_root=root)
    assert rc == 0, stderr[-3000:]
    [result] = of_type(messages, "result")
    assert result["global_batch_size"] == 32
    knobs = result["knobs"]
    assert "sharded over 2 devices (320 rows each)" in knobs["input"]
    assert knobs["variable_devices"] == "2"
    losses = [e["loss"] for e in result["runs"][0]["epochs"]]
    assert losses[-1] < 0.5 * losses[0], losses


def test_input_the_backend_cannot_honour_is_refused(tmp_path: Path) -> None:
    spec = job("torch", "mlp", "fashion_mnist", input="host", workload={"samples": 64, "synthetic": True})
    rc, messages, _ = run_job(spec, tmp_path)
    [err] = of_type(messages, "error")
    assert rc == 2 and err["error_type"] == "Unsupported" and err["message"].startswith("input:"), err


_NO_RECOMPILE = r'''
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, sys.argv[1])
import numpy as np, jax, keras
from jax import monitoring
from runner import keras_input

compiles = []
epoch = [-1]


def listen(event, secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        compiles.append(epoch[0])


monitoring.register_event_duration_secs_listener(listen)

class Mark(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None):
        epoch[0] = e

x = np.random.RandomState(0).rand(64, 8, 8, 1).astype("float32")
y = np.random.RandomState(1).randint(0, 10, 64).astype("int32")
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
data, steps, _ = keras_input.device_dataset(keras, "jax", x, y, 16, None)
model.fit(data, epochs=3, steps_per_epoch=steps, verbose=0, callbacks=[Mark()])
print(json.dumps(compiles))
'''


def test_device_input_compiles_nothing_after_the_first_epoch(tmp_path: Path) -> None:
    """Committed device batches once made Keras-JAX compile its train step again in the first measured
    epoch (half the host input's img/s on an H200): every compile must happen in the warm-up epoch."""
    import importlib.util
    import json
    import subprocess
    import sys

    from tests.runner.runjob import runner_home

    # found, not imported: importing Keras here would import TensorFlow 2 into the test process, which sets
    # TF2_BEHAVIOR=1 in os.environ for every later runner (the TF 1.13 stack then ran eagerly and failed)
    if not (importlib.util.find_spec("keras") and importlib.util.find_spec("jax")):
        pytest.skip("keras and jax are not installed")
    proc = subprocess.run([sys.executable, "-c", _NO_RECOMPILE, str(runner_home())], capture_output=True,
                          text=True, timeout=300, check=False, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert epochs and all(e <= 0 for e in epochs), epochs
