"""A GPU job never silently runs on the CPU: on this CPU machine a ``gpus: 1``
job on every installed backend ends with a typed Unsupported error naming
``gpus`` in the framework's own words; a CPU job records where it ran; the
probe reports what each framework sees."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner.runjob import job, of_type, run_job, runner_home
from tests.runner.test_legacy import STACKS, make_job, run_runner

pytestmark = pytest.mark.slow


def _installed(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed")


# backend -> what the framework's own words say
CURRENT = [
    pytest.param("keras-jax", "JAX", "sees platform cpu only", marks=_installed("jax")),
    pytest.param("keras-torch", "torch", "sees no CUDA device", marks=_installed("torch")),
    pytest.param("torch", "torch", "sees no CUDA device", marks=_installed("torch")),
    pytest.param("keras-tensorflow", "TensorFlow", "logical GPU", marks=_installed("tensorflow")),
]


def _no_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # as the agent starts a GPU job: the GPU it chose is visible, JAX is not forced onto the CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)


@pytest.mark.parametrize(("backend", "framework", "words"), CURRENT)
def test_gpu_job_is_unsupported_in_the_frameworks_words(backend: str, framework: str, words: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gpu_env(monkeypatch)
    spec = job(backend, "mlp", "fashion_mnist", gpus=1, workload={"samples": 64, "synthetic": True})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 2, stderr[-2000:]
    [err] = of_type(messages, "error")
    assert err["error_type"] == "Unsupported"
    assert err["message"].startswith("gpus: gpus=1 but " + framework), err["message"]
    assert words in err["message"]
    assert not of_type(messages, "epoch")  # refused before any training


@pytest.mark.legacy
@pytest.mark.parametrize("venv", sorted(STACKS))
def test_gpu_job_is_unsupported_on_the_2019_stacks(venv: str, tmp_path: Path) -> None:
    run = run_runner(venv, make_job(STACKS[venv], gpus=1), tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    error = run.one("error")
    framework = "MXNet" if STACKS[venv] == "keras-mxnet" else "TensorFlow"
    assert error["error_type"] == "Unsupported"
    assert error["message"].startswith("gpus: gpus=1 but %s " % framework), error["message"]
    assert "sees 0 GPU(s)" in error["message"]
    assert "epoch" not in run.types


@pytest.mark.legacy
@pytest.mark.parametrize("venv", sorted(STACKS))
def test_cpu_results_of_the_2019_stacks_say_where_they_ran(venv: str, tmp_path: Path) -> None:
    run = run_runner(venv, make_job(STACKS[venv], workload={"samples": 64}), tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    used = run.one("result")["devices_used"]
    assert used["kind"] == "cpu" and used["devices"]
    assert used["framework"] == ("mxnet" if STACKS[venv] == "keras-mxnet" else "tensorflow")
    assert "cpu" in used["devices"][0].lower()


@pytest.mark.parametrize(("backend", "framework"), [
    pytest.param("keras-jax", "jax", marks=_installed("jax")),
    pytest.param("keras-torch", "torch", marks=_installed("torch")),
    pytest.param("torch", "torch", marks=_installed("torch")),
    pytest.param("sleep", "sleep"),
])
def test_cpu_results_say_where_they_ran(backend: str, framework: str, tmp_path: Path) -> None:
    spec = job(backend, "mlp", "fashion_mnist", workload={"samples": 64, "batch_size": 8, "synthetic": True,
                                                          "steps_per_epoch": 2})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-2000:]
    used = messages[-1]["devices_used"]
    assert used["framework"] == framework and used["kind"] == "cpu", used
    assert used["devices"] and used["detail"]


def _probe(backend: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "runner.probe", backend, *args], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(runner_home())), timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("backend", "words"), [
    pytest.param("keras-jax", "JAX", marks=_installed("jax")),
    pytest.param("torch", "torch", marks=_installed("torch")),
])
def test_probe_asks_the_framework(backend: str, words: str) -> None:
    asked = _probe(backend, "--ask")
    assert asked["available"] and asked["accelerators"] == 0
    assert asked["accelerator_detail"].startswith(words)
    # without a device node no framework can see a GPU: 0, without importing it
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        quick = _probe(backend)
        assert quick["accelerators"] == 0 and "no accelerator device node" in quick["accelerator_detail"]


def test_probe_of_a_backend_without_framework_has_no_count() -> None:
    info = _probe("sleep")
    assert info["available"] and info["accelerators"] is None


@pytest.mark.parametrize(("backend", "module"), [("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                                                 ("litert", "ai_edge_litert")])
def test_a_gpu_job_on_a_cpu_runtime_is_unsupported(backend: str, module: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")
    _no_gpu_env(monkeypatch)
    spec = job(backend, "mlp", "fashion_mnist", mode="infer", gpus=1, inference={"scenario": "offline"},
               workload={"samples": 64, "synthetic": True})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 2, stderr[-2000:]
    [err] = of_type(messages, "error")
    assert err["error_type"] == "Unsupported" and err["message"].startswith(f"gpus: gpus=1 but {backend} offers no GPU")
