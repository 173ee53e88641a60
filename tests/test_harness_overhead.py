"""benchmarks/harness_overhead.py compares like with like: every arm of a round runs the
same job file (only job_id differs), the order alternates, and the bare loop and the runner
alone both run on it for real (Keras-JAX MLP on the CPU, host and device input)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_overhead", REPO / "benchmarks" / "harness_overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASE = {"backend": "keras-jax", "workload": "fashion-mnist-mlp", "batch_size": 32, "epochs": 3, "synthetic": True,
        "precision": "fp32", "gpus": 0, "steps_per_epoch": None, "timeout_s": 3600, "samples": 1024,
        "min_batches": 0, "min_window_s": 0}


def test_every_arm_of_a_round_runs_the_same_job() -> None:
    bench = _bench()
    for rnd in range(3):
        jobs = bench.round_jobs(CASE, rnd)
        assert set(jobs) == {"agent", "runner", "bare"}
        dumps = [j.model_dump(mode="json") for j in jobs.values()]
        assert len({j["job_id"] for j in dumps}) == 3
        for d in dumps:
            d.pop("job_id")
        assert dumps[0] == dumps[1] == dumps[2]
    assert bench.round_order(0, True) == ("agent", "runner", "bare")
    assert bench.round_order(1, True) == ("bare", "runner", "agent")
    assert bench.round_order(1, False) == ("bare", "agent")


@pytest.mark.parametrize("input_", ["host", "device"])
def test_bare_loop_and_runner_alone_on_one_job_file(tmp_path: Path, input_: str) -> None:
    bench = _bench()
    job = bench.round_jobs(dict(CASE, input=input_), 0)["bare"]
    path = bench.write_job_file(job, tmp_path)
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p))
    bare = bench.run_bare(path, env)
    assert len(bare["epoch_img_per_s"]) == 3 and bare["window_img_per_s"] > 0
    runner = bench.run_runner(path, env, tmp_path)
    assert runner > 0
    # the file on disk is the spec both ran
    assert json.loads(path.read_text())["input"] == input_
