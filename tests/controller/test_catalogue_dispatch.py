"""Every catalogue workload through controller → broker → agent → runner on the
CPU (short epochs, tiny data in the real formats), the DataMissing path, and
repeats reported as the median of N with the spread."""

from __future__ import annotations

import pytest

from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import build_job
from edgebench.controller.store import ResultStore
from edgebench.runner.catalogue import WORKLOADS
from tests.datasets_fixtures import write_cifar10, write_fashion_mnist
from tests.helpers import run_jobs, sleep_job, wait_online
from tests.runner.runjob import write_tiny_imagenet

# short runs of every workload, real files except the always-synthetic ResNet-50
CASES = {
    "fashion-mnist-mlp": {"samples": 128, "batch_size": 32},
    "fashion-mnist-cnn": {"samples": 64, "batch_size": 16},
    "cifar10-resnet56": {"samples": 16, "batch_size": 8},
    "synthetic-resnet50": {"samples": 4, "batch_size": 2},
    "imagenet-resnet50": {"steps_per_epoch": 2, "batch_size": 2},
}


def test_cases_cover_the_catalogue() -> None:
    assert set(CASES) == set(WORKLOADS)


@pytest.mark.slow
def test_every_workload_dispatched_and_data_missing(start_agent, controller_cfg, tmp_path) -> None:
    agent = start_agent("box1")
    datasets = tmp_path / "datasets"  # the start_agent fixture's dataset root
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "box1", agents=[agent])
        # no files yet: a job asking for real data fails, naming the expected path
        missing = build_job({"backend": "torch", "workload": "fashion-mnist-mlp", "samples": 64}, "j-missing")
        run_jobs(fleet, [Dispatched("box1", missing)], timeout_s=300)
        [row] = store.results(job_id="j-missing")
        assert (row.outcome, row.error_type) == ("FAILED", "DataMissing")
        assert "fashion_mnist/train-images-idx3-ubyte.gz" in (row.reason or "")

        datasets.mkdir(parents=True, exist_ok=True)
        write_fashion_mnist(datasets)
        write_cifar10(datasets)
        write_tiny_imagenet(datasets)
        # no window minimum: these check the path of every workload, not its speed
        no_minimum = {"min_batches": 0, "min_window_s": 0}
        plan = [Dispatched("box1", build_job({"backend": "torch", "workload": name, "epochs": 2, **no_minimum, **extra},
                                             f"j-{name}")) for name, extra in CASES.items()]
        run_jobs(fleet, plan, timeout_s=900)
    for name in CASES:
        [row] = store.results(job_id=f"j-{name}")
        assert row.outcome == "OK", (name, row.reason)
        res = row.result()
        assert res is not None and res.summary.window_img_per_s > 0 and res.summary.n_batches > 0
        expected = "synthetic" if name == "synthetic-resnet50" else "real"
        assert res.data_source == expected, name
        assert [e.warmup for e in res.runs[0].epochs] == [True, False]


def test_repeats_report_the_median_run_and_spread(start_agent, controller_cfg) -> None:
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "box1", agents=[agent])
        run_jobs(fleet, [Dispatched("box1", sleep_job("j-rep", epochs=2, steps=5, repeats=3))])
    res = store.results(job_id="j-rep")[0].result()
    assert res is not None and len(res.runs) == 3
    rates = sorted(r.throughput.window_img_per_s for r in res.runs)
    assert res.summary.window_img_per_s == rates[1]  # the median run is the headline
    assert res.repeat_spread.n == 3
    assert (res.repeat_spread.min_img_per_s, res.repeat_spread.max_img_per_s) == (rates[0], rates[2])
