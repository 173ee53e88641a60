"""Sweep files and job planning."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.controller.plan import PlanError, SweepFile, build_job, build_jobs, load_sweep

REPO = Path(__file__).resolve().parents[2]


def test_cartesian_product_with_overrides_and_excludes() -> None:
    sweep = SweepFile(
        name="s",
        matrix={"backend": ["keras-jax", "torch"], "workload": ["fashion-mnist-mlp", "fashion-mnist-cnn"],
                "batch_size": [16, 32]},
        defaults={"synthetic": True, "epochs": 3},
        overrides=[{"match": {"backend": "torch", "workload": "fashion-mnist-cnn"}, "set": {"batch_size": 64}}],
        exclude=[{"backend": "keras-jax", "batch_size": 16}],
    )
    cases = sweep.cases()
    assert len(cases) == 6
    jobs = build_jobs(cases, "sweep-1")
    assert all(j.sweep_id == "sweep-1" and j.workload.epochs == 3 for j in jobs)
    assert {j.workload.batch_size for j in jobs if j.backend.value == "torch" and j.workload.model == "cnn"} == {64}
    assert len({j.job_id for j in jobs}) == 6


def test_catalogue_defaults_filled() -> None:
    job = build_job({"backend": "keras-jax", "workload": "synthetic-resnet50"}, "j")
    assert (job.workload.optimizer, job.workload.learning_rate, job.workload.batch_size) == ("rmsprop", 1e-4, 32)


@pytest.mark.parametrize("case,needle", [
    ({"backend": "keras-jax", "workload": "nope"}, "unknown workload"),
    ({"backend": "keras-jax", "workload": "fashion-mnist-mlp", "batch_size": 0}, "batch_size"),
    ({"backend": "caffe", "workload": "fashion-mnist-mlp"}, "backend"),
])
def test_bad_cases_name_the_problem(case, needle) -> None:
    with pytest.raises(PlanError, match=needle):
        build_job(case, "j")


def test_unknown_sweep_key() -> None:
    with pytest.raises(PlanError, match="unknown sweep keys: colour"):
        SweepFile(name="s", matrix={"backend": ["torch"], "workload": ["fashion-mnist-mlp"], "colour": [1]}).cases()


def test_shipped_sweeps_are_valid() -> None:
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        build_jobs(load_sweep(path).cases(), "x")


def test_include_adds_cases_outside_the_product() -> None:
    sweep = SweepFile(name="s", defaults={"workload": "imagenet-resnet50", "synthetic": True, "samples": 512,
                                          "steps_per_epoch": None},
                      include=[{"backend": "torch", "precision": "bf16", "compile": True},
                               {"backend": "keras-jax", "precision": "fp32"}])
    jobs = build_jobs(sweep.cases(), "k")
    assert [(j.backend.value, j.precision.value, j.compile) for j in jobs] == [("torch", "bf16", True),
                                                                               ("keras-jax", "fp32", None)]
    assert jobs[0].workload.steps_per_epoch is None


def test_a_case_without_backend_is_an_error() -> None:
    with pytest.raises(PlanError, match="no 'backend'"):
        SweepFile(name="s", defaults={"workload": "fashion-mnist-mlp"}, include=[{"batch_size": 8}]).cases()
