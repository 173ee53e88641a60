"""Inference mode: per-batch latency, warm-up passes excluded, for native torch and Keras 3."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgebench.schemas.result import RunResult
from tests.runner.runjob import job, of_type, run_job

pytestmark = pytest.mark.slow

BACKENDS = [
    pytest.param("torch", marks=pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="torch not installed")),
    pytest.param("keras-jax", marks=pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="jax not installed")),
    pytest.param("keras-torch", marks=pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="torch not installed")),
]


def infer_job(backend: str, **overrides):
    workload = {"samples": 40, "batch_size": 8, "synthetic": True, "epochs": 3}
    workload.update(overrides.pop("workload", {}))
    return job(backend, "cnn", "fashion_mnist", mode="infer", workload=workload, **overrides)


@pytest.mark.parametrize("backend", BACKENDS)
def test_latency_over_measured_passes(backend: str, tmp_path: Path) -> None:
    rc, messages, stderr = run_job(infer_job(backend), tmp_path)
    assert rc == 0, stderr[-3000:]
    epochs = of_type(messages, "epoch")
    assert [e["warmup"] for e in epochs] == [True, False, False]
    assert all(e["batches"] == 5 and e["loss"] is None for e in epochs)
    run = messages[-1]["runs"][0]
    RunResult.model_validate(run)
    latency = run["latency"]
    assert latency["n_batches"] == 10  # two measured passes of 5 batches; warm-up excluded
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    assert run["throughput"]["images"] == 80


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_measured_is_refused(backend: str, tmp_path: Path) -> None:
    # The schema lets an inference job have warmup_epochs >= epochs; it would report zeros.
    rc, messages, _ = run_job(infer_job(backend, warmup_epochs=1, workload={"epochs": 1}), tmp_path)
    assert rc == 2
    assert messages[-1]["error_type"] == "Unsupported" and "warmup_epochs" in messages[-1]["message"]
