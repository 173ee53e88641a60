"""The controller CLI end to end: real broker, real agent process, real training."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore
from tests.helpers import wait_online

runner = CliRunner()


def _cli(cfg, *args: str):
    return runner.invoke(app, ["--broker", cfg.broker_url, "--fleet", cfg.fleet, "--store", cfg.store_url, *args])


def test_devices_lists_online_agent(start_agent, controller_cfg):
    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    out = _cli(controller_cfg, "devices")
    assert out.exit_code == 0, out.output
    assert "box1" in out.output and "online" in out.output


def test_dispatch_without_targets_is_a_clear_error(controller_cfg):
    out = _cli(controller_cfg, "dispatch", "-b", "sleep", "-w", "fashion-mnist-mlp", "--all")
    # a well-formed request that the fleet's state (nobody online) defeats: a runtime failure, not usage
    assert out.exit_code == 1
    assert "no target device" in out.stderr and "Traceback" not in out.output


def test_dispatch_no_wait_prints_job_ids(start_agent, controller_cfg):
    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    out = _cli(controller_cfg, "dispatch", "-d", "box1", "-b", "sleep", "-w", "fashion-mnist-mlp",
               "--synthetic", "--steps-per-epoch", "2", "--no-wait")
    assert out.exit_code == 0, out.output
    job_id, device = out.output.strip().splitlines()[-1].split("\t")
    assert device == "box1" and job_id.startswith("job-")


@pytest.mark.slow
def test_dispatch_real_training_fills_report(start_agent, controller_cfg):
    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    out = _cli(controller_cfg, "dispatch", "--all", "-b", "keras-jax", "-b", "keras-torch",
               "-w", "fashion-mnist-mlp", "--batch-size", "32", "--samples", "2048", "--synthetic",
               "--sweep-id", "cli-sweep", "--wait-timeout", "600")
    assert out.exit_code == 0, out.output + agent.log()[-3000:]
    assert "cli-sweep" in out.output
    rows = ResultStore(controller_cfg.store_url).results(sweep_id="cli-sweep")
    assert sorted(r.backend for r in rows) == ["keras-jax", "keras-torch"]
    for r in rows:
        assert r.outcome == "OK" and r.img_per_s > 0
        res = r.result()
        assert res.data_source == "synthetic"
        # 2048/32 per measured epoch; the catalogue's 100-batch minimum window adds whole epochs
        policy = res.summary.window_policy
        assert policy is not None and policy.met and res.summary.n_batches == 64 * policy.measured_epochs >= 100
        assert res.fingerprint.libraries["keras"].startswith("3.")
        assert res.runs[0].epochs[0].warmup and not res.runs[0].epochs[1].warmup
    report = _cli(controller_cfg, "report", "--sweep", "cli-sweep", "--baseline", "keras-jax")
    assert report.exit_code == 0
    assert "keras-torch" in report.output and "1.00" in report.output
    listing = _cli(controller_cfg, "results", "--sweep", "cli-sweep")
    assert listing.exit_code == 0 and "OK" in listing.output
    shown = _cli(controller_cfg, "results", "show", rows[0].job_id)
    doc = json.loads(shown.output)
    assert doc["results"][0]["result"]["summary"]["window_img_per_s"] > 0


def test_schema_export(tmp_path, controller_cfg):
    out = _cli(controller_cfg, "schema", "export", str(tmp_path))
    assert out.exit_code == 0
    assert (tmp_path / "job.schema.json").exists()
    assert json.loads((tmp_path / "result.schema.json").read_text())["title"] == "Result"


def test_workloads_lists_catalogue(controller_cfg):
    out = _cli(controller_cfg, "workloads")
    assert out.exit_code == 0
    for name in ("fashion-mnist-mlp", "cifar10-resnet56", "synthetic-resnet50", "imagenet-resnet50"):
        assert name[:8] in out.output
