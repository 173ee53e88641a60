"""Windows long enough to mean something, through real backends on the CPU:
the runner measures whole epochs beyond the asked ones until the job's
min_batches and min_window_s hold, records what it did, and cuts the window
into blocks whose img/s agree with the window's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgebench.schemas.result import RunResult
from tests.runner.runjob import job, of_type, run_job
from tests.runner.test_legacy import STACKS, make_job, run_runner

pytestmark = pytest.mark.slow


def _installed(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed")


BACKENDS = [
    pytest.param("keras-jax", marks=_installed("jax")),
    pytest.param("keras-torch", marks=_installed("torch")),
    pytest.param("torch", marks=_installed("torch")),
]


def _check_extended(result: dict, measured_epochs: int, batches_per_epoch: int) -> RunResult:
    [raw] = result["runs"]
    run = RunResult.model_validate(raw, strict=False)
    assert [e.warmup for e in run.epochs] == [True] + [False] * measured_epochs
    policy = run.throughput.window_policy
    assert policy is not None and policy.met
    assert (policy.asked_epochs, policy.measured_epochs, policy.extended_epochs) == (1, measured_epochs,
                                                                                     measured_epochs - 1)
    assert run.throughput.n_batches == measured_epochs * batches_per_epoch
    rates, images = run.throughput.block_img_per_s, run.throughput.block_images
    assert rates is not None and images is not None and len(rates) == len(images) == 10
    assert sum(images) == run.throughput.images
    # the blocks tile the window: pooled, they give its img/s exactly
    pooled = sum(images) / sum(n / r for n, r in zip(images, rates))
    assert pooled == pytest.approx(run.throughput.window_img_per_s, rel=1e-6)
    return run


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_batches_extends_training(backend: str, tmp_path: Path) -> None:
    # 64 samples of 8: 8 batches per epoch; 20 batches need 3 measured epochs
    spec = job(backend, "mlp", "fashion_mnist", min_batches=20, min_window_s=0.0,
               workload={"samples": 64, "batch_size": 8, "synthetic": True})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    _check_extended(messages[-1], 3, 8)
    assert [w["edge"] for w in of_type(messages, "window")] == ["begin", "end"]
    # the window closes after the last epoch
    assert messages.index(of_type(messages, "window")[-1]) > messages.index(of_type(messages, "epoch")[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_batches_extends_inference(backend: str, tmp_path: Path) -> None:
    spec = job(backend, "mlp", "fashion_mnist", mode="infer", min_batches=12,
               workload={"samples": 40, "batch_size": 8, "synthetic": True, "epochs": 2})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    [run] = messages[-1]["runs"]
    assert run["latency"]["n_batches"] == 15  # 3 measured passes of 5 batches
    assert run["throughput"]["window_policy"]["extended_epochs"] == 2


@pytest.mark.legacy
@pytest.mark.parametrize("venv", sorted(STACKS))
def test_min_batches_extends_the_2019_stacks(venv: str, tmp_path: Path) -> None:
    # 512 samples of 32: 16 batches per epoch; 40 batches need 3 measured epochs
    run = run_runner(venv, make_job(STACKS[venv], min_batches=40), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_extended(run.one("result"), 3, 16)
