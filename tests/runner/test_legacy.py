"""Real training on the 2019 stacks through ``python -m runner`` (runner/legacy.py).

Each test runs the runner in one of the venvs that scripts/setup-legacy-venvs.sh
builds under .cache/venvs/ and reads its JSON lines. Workloads are tiny
(synthetic Fashion-MNIST, 512 samples, 2 epochs of batch 32) so that the
whole module takes well under a minute on two cores.

Every run gets a fresh HOME holding a decoy ~/.keras/keras.json that names
the Theano backend: had Keras read it, the import would fail; the runner's
private KERAS_HOME must leave it byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgebench.schemas.job import JobSpec
from edgebench.schemas.result import RunResult
from tests.runner.runjob import runner_home

REPO = Path(__file__).resolve().parents[2]
VENVS = Path(os.environ.get("EDGEBENCH_VENVS", REPO / ".cache" / "venvs"))
SETUP_HINT = "run scripts/setup-legacy-venvs.sh"

# venv name -> the backend it runs
STACKS = {
    "keras-mxnet-py36": "keras-mxnet",
    "keras-tf1-py36": "keras-tensorflow1",
    "keras-mxnet-py311": "keras-mxnet",
}
DEFAULT_FORMAT = {"keras-mxnet": "channels_first", "keras-tensorflow1": "channels_last"}
DECOY_KERAS_JSON = json.dumps(
    {"backend": "theano", "image_data_format": "channels_last", "floatx": "float64", "epsilon": 0.1}
)

pytestmark = pytest.mark.legacy


def venv_python(name: str) -> Path:
    exe = VENVS / name / "bin" / "python"
    if not exe.exists():
        pytest.skip("venv %s missing (%s): %s" % (name, exe, SETUP_HINT))
    return exe


def make_job(backend: str, model: str = "mlp", **overrides: Any) -> dict[str, Any]:
    workload = {
        "model": model, "dataset": "fashion_mnist", "batch_size": 32, "epochs": 2,
        "optimizer": "adam", "learning_rate": 0.001, "samples": 512, "synthetic": True,
    }
    workload.update(overrides.pop("workload", {}))
    job = {"job_id": "legacy-test", "backend": backend, "workload": workload, **overrides}
    # validated by the real contract, then sent the way the agent sends it
    return JobSpec.model_validate_json(json.dumps(job)).model_dump(mode="json")


@dataclass
class RunnerRun:
    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    home: Path
    types: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.types = [m["type"] for m in self.messages]

    def one(self, type_: str) -> dict[str, Any]:
        found = [m for m in self.messages if m["type"] == type_]
        assert len(found) == 1, (type_, self.types, self.stderr[-3000:])
        return found[0]

    def all(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]


def run_runner(venv: str, job: dict[str, Any], tmp_path: Path, dataset_root: Path | None = None) -> RunnerRun:
    python = venv_python(venv)
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    (home / ".keras" / "keras.json").write_text(DECOY_KERAS_JSON)
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))
    root = dataset_root or tmp_path / "datasets"
    root.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHON"))}
    env.update(HOME=str(home), PYTHONPATH=str(runner_home()), TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [str(python), "-m", "runner", "--job", str(job_path), "--dataset-root", str(root)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return RunnerRun(proc.returncode, messages, proc.stderr, home)


def check_private_keras_home(run: RunnerRun) -> None:
    assert (run.home / ".keras" / "keras.json").read_text() == DECOY_KERAS_JSON
    assert sorted(p.name for p in run.home.rglob("*")) == [".keras", "keras.json"]
    keras_home = run.one("hello")["keras_home"]
    assert not Path(keras_home).is_relative_to(run.home)
    assert not os.path.exists(keras_home), "the private KERAS_HOME is removed after the job"


def check_training_protocol(run: RunnerRun, job: dict[str, Any], source: str = "synthetic") -> list[RunResult]:
    """hello, data, window begin/end around the measured epochs, result last."""
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.types[0] == "hello" and run.types[-1] == "result", run.types
    assert "error" not in run.types
    hello = run.one("hello")
    libs = hello["libraries"]
    if job["backend"] == "keras-mxnet":
        assert libs["keras-mxnet"].startswith("2.2.4") and libs["mxnet"]
    else:
        assert libs["keras"] == "2.2.4" and libs["tensorflow"] == "1.13.1"
    assert libs["numpy"] and libs["python"] == hello["python"]
    data = run.one("data")
    assert data["source"] == source
    if source == "synthetic":
        assert data["samples"] == job["workload"]["samples"]

    wl = job["workload"]
    repeats = job["repeats"]
    edges = [(m["edge"], m["repeat"]) for m in run.all("window")]
    assert edges == [e for r in range(1, repeats + 1) for e in (("begin", r), ("end", r))]
    epochs = run.all("epoch")
    assert [(e["repeat"], e["epoch"], e["warmup"]) for e in epochs] == [
        (r, n, n <= job["warmup_epochs"]) for r in range(1, repeats + 1) for n in range(1, wl["epochs"] + 1)
    ]
    batches = wl.get("steps_per_epoch") or wl["samples"] // wl["batch_size"]
    for e in epochs:
        assert e["batches"] == batches and e["images"] == batches * wl["batch_size"]
        assert e["img_per_s"] > 0 and e["loss"] is not None and e["accuracy"] is not None
    # every measured epoch lies inside its repeat's window
    for r in range(1, repeats + 1):
        begin = next(m["t"] for m in run.all("window") if m["repeat"] == r and m["edge"] == "begin")
        end = next(m["t"] for m in run.all("window") if m["repeat"] == r and m["edge"] == "end")
        for e in epochs:
            if e["repeat"] == r and not e["warmup"]:
                assert begin <= e["t"] <= end

    result = run.one("result")
    assert result["global_batch_size"] == wl["batch_size"]
    assert result["data_source"] == source
    runs = [RunResult.model_validate(raw, strict=False) for raw in result["runs"]]
    assert len(runs) == repeats
    measured = (wl["epochs"] - job["warmup_epochs"]) * batches * wl["batch_size"]
    for one_run in runs:
        assert one_run.throughput.images == measured
        assert one_run.throughput.window_img_per_s > 0
        assert one_run.throughput.n_batches == measured // wl["batch_size"]
    knobs = result["knobs"]
    assert knobs["image_data_format"] == (job["data_format"] or DEFAULT_FORMAT[job["backend"]])
    assert knobs["dtype_policy"] == "float32" and knobs["memory"]
    check_private_keras_home(run)
    return runs


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("venv", sorted(STACKS))
def test_trains_fashion_mnist(venv: str, model: str, tmp_path: Path) -> None:
    job = make_job(STACKS[venv], model)
    run = run_runner(venv, job, tmp_path)
    check_training_protocol(run, job)
    shims = run.one("hello")["shims"]
    if venv.endswith("py311"):  # Keras 2.2.4 imports Iterable from collections
        assert any(s.startswith("collections.") for s in shims), shims
    else:
        assert shims == []
    # keras-mxnet's forced DeprecationWarnings stay off stderr
    assert "DeprecationWarning" not in run.stderr


def test_tf1_ignores_the_tf2_behavior_flag_of_its_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorFlow 2 sets TF2_BEHAVIOR=1 in its process at import; a TF 1.13 runner started from such a
    process (an agent, a test that imported Keras 3) ran eagerly and failed in tf.placeholder (a full CI run)."""
    monkeypatch.setenv("TF2_BEHAVIOR", "1")
    job = make_job("keras-tensorflow1", "mlp")
    run = run_runner("keras-tf1-py36", job, tmp_path)
    check_training_protocol(run, job)
    assert "TF2_BEHAVIOR unset" in run.one("hello")["shims"]


def test_resnet56_tiny_on_mxnet(tmp_path: Path) -> None:
    venv = "keras-mxnet-py311" if (VENVS / "keras-mxnet-py311").exists() else "keras-mxnet-py36"
    job = make_job("keras-mxnet", "resnet56", workload={"dataset": "cifar10", "samples": 32, "batch_size": 16})
    check_training_protocol(run_runner(venv, job, tmp_path), job)


def test_tf1_fit_generator_repeats_and_session_config(tmp_path: Path) -> None:
    """steps_per_epoch goes through fit_generator; every repeat's session keeps the job's config."""
    job = make_job("keras-tensorflow1", workload={"samples": 256, "steps_per_epoch": 12},
                   repeats=2, memory_policy="fraction", memory_fraction=0.25, data_format="channels_first")
    run = run_runner("keras-tf1-py36", job, tmp_path)
    check_training_protocol(run, job)
    knobs = run.one("result")["knobs"]
    assert knobs["per_process_gpu_memory_fraction"] == "0.25" and knobs["allow_growth"] == "True"
    for r in run.one("result")["runs"]:
        assert r["knobs"] == knobs


def test_streamed_imagenet_through_fit_generator(tmp_path: Path) -> None:
    """Real JPEG folders, decoded by runner/imagenet.py, into keras-mxnet's fit_generator.

    The MLP stands in for ResNet-50 (same 224x224x3 input, 1,000 classes) to keep the test short.
    """
    pytest.importorskip("PIL")
    from tests.runner.runjob import write_tiny_imagenet

    root = write_tiny_imagenet(tmp_path / "datasets", classes=3, per_class=2)
    job = make_job("keras-mxnet", "mlp", workload={
        "dataset": "imagenet", "synthetic": False, "samples": None, "batch_size": 2, "steps_per_epoch": 4})
    run = run_runner("keras-mxnet-py36", job, tmp_path, dataset_root=root)
    check_training_protocol(run, job, source="real")
    assert run.one("data")["samples"] == 6
    assert "Pillow" in run.one("result")["knobs"]["data"]


def test_mxnet_default_is_channels_first_and_override(tmp_path: Path) -> None:
    job = make_job("keras-mxnet", "cnn", data_format="channels_last", workload={"samples": 64})
    check_training_protocol(run_runner("keras-mxnet-py36", job, tmp_path), job)


def test_data_missing_is_typed(tmp_path: Path) -> None:
    job = make_job("keras-mxnet", workload={"synthetic": False})
    run = run_runner("keras-mxnet-py36", job, tmp_path, dataset_root=tmp_path / "empty")
    assert run.returncode == 2
    error = run.one("error")
    assert error["error_type"] == "DataMissing"
    assert "fashion_mnist" in error["message"] and str(tmp_path / "empty") in error["message"]
    assert "result" not in run.types


@pytest.mark.parametrize(("venv", "field_", "overrides"), [
    ("keras-tf1-py36", "precision", {"precision": "fp16"}),
    ("keras-mxnet-py36", "precision", {"precision": "bf16"}),
    ("keras-mxnet-py36", "memory_policy", {"memory_policy": "preallocate", "memory_fraction": 0.5}),
    ("keras-tf1-py36", "gpus", {"gpus": 1}),
])
def test_unsupported_names_the_field(venv: str, field_: str, overrides: dict[str, Any], tmp_path: Path) -> None:
    run = run_runner(venv, make_job(STACKS[venv], **overrides), tmp_path)
    assert run.returncode == 2
    error = run.one("error")
    assert error["error_type"] == "Unsupported" and error["message"].startswith(field_ + ":")

