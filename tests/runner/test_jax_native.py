"""Native JAX (backend jax, Flax + optax): real training on the CPU, the models
matched to Keras's, and data parallelism as jit over a Mesh of 2 virtual CPU devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.runner.runjob import job, of_type, run_job
from tests.runner.test_keras_input import SAMPLES, write_learnable_fashion_mnist

pytest.importorskip("flax")
pytest.importorskip("optax")


def _train(tmp_path: Path, model: str = "mlp", **extra) -> dict:
    root = tmp_path / "data"
    if not root.exists():
        write_learnable_fashion_mnist(root)
    workload = {"batch_size": 32, "epochs": 4, "samples": SAMPLES}
    workload.update(extra.pop("workload", {}))
    spec = job("jax", model, "fashion_mnist", workload=workload, **extra)
    rc, messages, stderr = run_job(spec, tmp_path, dataset_root=root)
    assert rc == 0, stderr[-3000:]
    [hello] = of_type(messages, "hello")
    assert {"jax", "jaxlib", "flax", "optax"} <= set(hello["libraries"])
    [result] = of_type(messages, "result")
    return result


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_native_jax_learns(tmp_path: Path, model: str) -> None:
    result = _train(tmp_path, model)
    [run] = result["runs"]
    losses = [e["loss"] for e in run["epochs"]]
    assert [e["batches"] for e in run["epochs"]] == [SAMPLES // 32] * 4
    assert losses[0] < 2.3 and losses[-1] < 0.5 * losses[0], losses
    assert run["accuracy"] > 0.8
    t = run["throughput"]
    # batch ends at completion (one per step, from the completion thread), not at dispatch
    assert t["n_batches"] == 3 * (SAMPLES // 32) and t["window_img_per_s"] > 0
    assert t["median_img_per_s"] < 20 * t["window_img_per_s"]
    knobs = result["knobs"]
    assert knobs["input"] == "device" and knobs["compile"].startswith("jax.jit")
    assert result["devices_used"]["framework"] == "jax"


def test_native_jax_bf16_resnet56(tmp_path: Path) -> None:
    result = _train(tmp_path, "resnet56", precision="bf16",
                    workload={"batch_size": 8, "epochs": 2, "samples": 32, "synthetic": True})
    assert result["knobs"]["precision"] == "bf16 compute, float32 parameters"
    assert result["runs"][0]["loss"] is not None


def test_native_jax_data_parallel_on_a_mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23's CPU path: jit over a Mesh of 2 virtual CPU devices, batch-sharded resident data."""
    monkeypatch.setenv("EDGEBENCH_VIRTUAL_CPU_DEVICES", "1")
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    monkeypatch.setenv("XLA_FLAGS", flags.strip())
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    result = _train(tmp_path, "mlp", gpus=2, workload={"batch_size": 16})
    assert result["per_device_batch_size"] == 16 and result["global_batch_size"] == 32
    assert "Mesh of 2 cpu devices" in result["knobs"]["device"]
    assert "sharded over 2 devices" in result["knobs"]["data"]
    assert len(result["devices_used"]["devices"]) == 2
    [run] = result["runs"]
    assert run["epochs"][1]["images"] == SAMPLES
    losses = [e["loss"] for e in run["epochs"]]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("backend", ["jax"])
def test_what_native_jax_does_not_offer_is_refused(tmp_path: Path, backend: str) -> None:
    for extra, field in (({"precision": "fp16"}, "precision"), ({"data_format": "channels_first"}, "data_format"),
                         ({"compile": False}, "compile"), ({"input": "host"}, "input")):
        spec = job(backend, "mlp", "fashion_mnist", workload={"samples": 64, "synthetic": True}, **extra)
        rc, messages, _ = run_job(spec, tmp_path)
        [err] = of_type(messages, "error")
        assert rc == 2 and err["error_type"] == "Unsupported" and err["message"].startswith(field + ":"), err


@pytest.mark.parametrize("model,dataset", [("mlp", "fashion_mnist"), ("cnn", "fashion_mnist"),
                                           ("resnet56", "cifar10"), ("resnet50", "cifar10")])
def test_flax_models_match_keras_layer_for_layer(model: str, dataset: str) -> None:
    """Same weights, shape for shape (parameters and BatchNorm statistics), as keras_models builds."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp
    import keras

    from edgebench.runner import jax_models, keras_models
    from edgebench.runner.catalogue import DATASETS

    if keras.backend.backend() != "jax":
        pytest.skip("Keras was imported on another backend in this process")
    info = DATASETS[dataset]
    shape: tuple[int, int, int] = info["shape"]  # type: ignore[assignment]
    h, w, c = shape
    flax_model = jax_models.build(model, info["classes"], jnp.float32)
    shapes = jax.eval_shape(lambda: flax_model.init(jax.random.PRNGKey(0), jnp.zeros((1, h, w, c)), train=False))
    flax_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    keras_model = keras_models.build(keras, model, info["shape"], info["classes"], "channels_last")
    keras_shapes = sorted(tuple(v.shape) for v in keras_model.weights)
    assert flax_shapes == keras_shapes
