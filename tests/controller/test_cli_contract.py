"""The controller CLI as scripts use it: exit codes, --json, full values through a
pipe, warnings on stderr, the store left alone by read-only commands. Real Mosquitto,
real agent processes (the sleep backend), real subprocess pipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgebench.common.version import edgebench_version
from edgebench.controller.cli import app
from edgebench.controller.config import ControllerConfig
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore
from tests.conftest import REPO
from tests.helpers import wait_online

runner = CliRunner()
CONTROLLER = [sys.executable, "-m", "edgebench.controller.cli"]


def _cli(cfg: ControllerConfig, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--broker", cfg.broker_url, "--fleet", cfg.fleet, "--store", cfg.store_url, *args])


def _shell(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A real shell pipeline (stdout is a pipe, not a terminal), at 80 columns."""
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "COLUMNS": "80", **env}, check=False)


def _online(cfg: ControllerConfig, start_agent, device_id: str = "box1"):  # type: ignore[no-untyped-def]
    agent = start_agent(device_id)
    with FleetClient(cfg, ResultStore(cfg.store_url)) as fc:
        wait_online(fc, device_id, agents=[agent])
    return agent


# -- through a pipe ----------------------------------------------------------------------------


def test_workloads_through_a_pipe_prints_full_rows() -> None:
    controller = " ".join(CONTROLLER)
    proc = _shell(f"{controller} workloads | grep -c synthetic-resnet50")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
    rows = _shell(f"{controller} workloads").stdout.splitlines()
    assert rows[0].split("\t")[:2] == ["name", "model"]
    assert all(len(r.split("\t")) == 8 for r in rows)


def test_job_ids_are_never_cut_through_a_pipe(start_agent, controller_cfg: ControllerConfig) -> None:
    _online(controller_cfg, start_agent)
    cfg = controller_cfg
    proc = _shell(f"{' '.join(CONTROLLER)} --broker {cfg.broker_url} --fleet {cfg.fleet} --store {cfg.store_url} "
                  "dispatch -d box1 -b sleep -w fashion-mnist-mlp --synthetic --steps-per-epoch 2 | cat")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = ResultStore(cfg.store_url).results()
    lines = proc.stdout.splitlines()
    # one plain line per state change while waiting, each naming the whole job id, then the summary rows
    states = [ln for ln in lines if row.job_id in ln and "box1" in ln]
    assert any(ln.endswith("QUEUED") for ln in states), lines
    assert any("SUCCEEDED" in ln for ln in states), lines
    assert not any("…" in ln for ln in lines)
    summary = [ln.split("\t") for ln in lines if ln.startswith(row.job_id + "\t")]
    assert summary and summary[0][5] == "OK"


# -- --json ---------------------------------------------------------------------------------------


def test_json_documents(start_agent, controller_cfg: ControllerConfig) -> None:
    _online(controller_cfg, start_agent)
    dispatched = _cli(controller_cfg, "dispatch", "-d", "box1", "-b", "sleep", "-w", "fashion-mnist-mlp",
                      "--synthetic", "--steps-per-epoch", "2", "--json")
    assert dispatched.exit_code == 0, dispatched.output
    doc = json.loads(dispatched.stdout)
    assert doc["succeeded"] == 1 and doc["jobs"][0]["outcome"] == "OK" and doc["jobs"][0]["img_per_s"] > 0
    job_id = doc["jobs"][0]["job_id"]

    devices = json.loads(_cli(controller_cfg, "devices", "--json").stdout)
    assert [d["device_id"] for d in devices] == ["box1"] and devices[0]["state"] == "online"
    assert any(b["backend"] == "sleep" for b in devices[0]["backends"])

    listed = json.loads(_cli(controller_cfg, "results", "--json").stdout)
    assert listed[0]["job_id"] == job_id and listed[0]["outcome"] == "OK"

    assert json.loads(_cli(controller_cfg, "jobs", "--json").stdout) == []
    workloads = json.loads(_cli(controller_cfg, "workloads", "--json").stdout)
    assert "synthetic-resnet50" in {w["name"] for w in workloads}
    images = json.loads(_cli(controller_cfg, "images", "list", "--json").stdout)
    assert {"image", "backend", "variant", "dockerfile"} <= set(images[0])


# -- exit codes -----------------------------------------------------------------------------------


def test_broker_unreachable_is_a_runtime_failure(tmp_path: Path) -> None:
    from edgebench.common.broker import free_port

    out = runner.invoke(app, ["--broker", f"mqtt://127.0.0.1:{free_port()}", "--store",
                              f"sqlite:///{tmp_path / 'r.db'}", "devices"])
    assert out.exit_code == 1
    assert "could not connect" in out.stderr and "Traceback" not in out.output
    assert len(out.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(controller_cfg: ControllerConfig) -> None:
    assert _cli(controller_cfg, "dispatch", "--no-such-option").exit_code == 2
    missing = _cli(controller_cfg, "dispatch", "-d", "box1")
    assert missing.exit_code == 2 and "give --backend and --workload" in missing.stderr
    bad_since = _cli(controller_cfg, "results", "export", "--out", "x.csv", "--since", "yesterday-ish")
    assert bad_since.exit_code == 2


def test_dispatch_wait_exits_1_when_a_job_is_rejected(start_agent, controller_cfg: ControllerConfig) -> None:
    _online(controller_cfg, start_agent)
    out = _cli(controller_cfg, "dispatch", "-d", "box1", "-b", "sleep", "-w", "fashion-mnist-mlp", "--synthetic",
               "--steps-per-epoch", "2", "--gpus", "1")  # this agent has no GPU: REJECTED
    assert out.exit_code == 1, out.output
    assert "REJECTED" in out.stdout
    assert "did not succeed" in out.stderr


# -- presence warnings and open jobs ----------------------------------------------------------------


def test_dispatch_warns_about_a_device_that_never_announced_itself(controller_cfg: ControllerConfig) -> None:
    out = _cli(controller_cfg, "dispatch", "-d", "ghost-1", "-b", "sleep", "-w", "fashion-mnist-mlp",
               "--synthetic", "--no-wait")
    assert out.exit_code == 0, out.output
    assert "ghost-1 has never announced itself" in out.stderr
    assert out.stdout.strip().endswith("\tghost-1")
    jobs = _cli(controller_cfg, "jobs", "--json")
    assert jobs.exit_code == 0, jobs.output
    (job,) = json.loads(jobs.stdout)
    assert job["device_id"] == "ghost-1" and job["state"] == "DISPATCHED"
    assert job["device_state"] == "never announced"
    table = _cli(controller_cfg, "jobs")
    assert job["job_id"] in table.stdout and "never announced" in table.stdout


def test_dispatch_warns_about_an_offline_device_with_its_last_seen_time(
        start_agent, controller_cfg: ControllerConfig) -> None:
    agent = _online(controller_cfg, start_agent, "box2")
    agent.stop()  # says goodbye: its retained status turns offline
    deadline = time.monotonic() + 30
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        while time.monotonic() < deadline:
            fc.pump(0.2)
            status = fc.statuses.get("box2")
            if status is not None and not status.online:
                break
    out = _cli(controller_cfg, "dispatch", "-d", "box2", "-b", "sleep", "-w", "fashion-mnist-mlp", "--synthetic",
               "--no-wait")
    assert out.exit_code == 0, out.output
    assert "box2 is offline (last seen" in out.stderr and " ago)" in out.stderr


def test_jobs_lists_queued_and_running_jobs_per_device(start_agent, controller_cfg: ControllerConfig) -> None:
    _online(controller_cfg, start_agent)
    cfg = controller_cfg
    for _ in range(2):  # one runs, one waits in the agent's queue
        out = _cli(cfg, "dispatch", "-d", "box1", "-b", "sleep", "-w", "fashion-mnist-mlp", "--synthetic",
                   "--epochs", "30", "--steps-per-epoch", "50", "--no-wait")
        assert out.exit_code == 0, out.output
    deadline = time.monotonic() + 60
    jobs: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        jobs = json.loads(_cli(cfg, "jobs", "--json", "--wait", "1.5").stdout)
        if "RUNNING" in {j["state"] for j in jobs}:
            break
    # the running one first (the device's status names it), then the one waiting: QUEUED if a collector
    # stored the agent's event, else still DISPATCHED as far as this store knows
    assert [j["state"] for j in jobs][:1] == ["RUNNING"] and len(jobs) == 2, jobs
    assert jobs[1]["state"] in ("DISPATCHED", "QUEUED")
    assert {j["device_id"] for j in jobs} == {"box1"} and {j["device_state"] for j in jobs} == {"online"}


def test_devices_watch_off_a_terminal_prints_a_line_per_change(start_agent, controller_cfg: ControllerConfig) -> None:
    _online(controller_cfg, start_agent)
    out = _cli(controller_cfg, "devices", "--watch", "--duration", "2")
    assert out.exit_code == 0, out.output
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("box1\t")]
    assert line.split("\t")[1] == "online"



def test_devices_watch_prints_a_change_but_not_a_status_that_only_has_a_newer_time(capsys) -> None:  # type: ignore[no-untyped-def]
    """The agent re-sends its retained status periodically and after every reconnect:
    those are not changes, a job starting is."""
    from datetime import datetime, timedelta, timezone
    from io import StringIO

    from rich.console import Console

    from edgebench.common.console import Output
    from edgebench.controller.commands.devices import _watch
    from edgebench.schemas import AgentStatus

    t0 = datetime.now(timezone.utc)
    sends = [AgentStatus(device_id="box1", fleet="f", online=True, at=t0),
             AgentStatus(device_id="box1", fleet="f", online=True, at=t0 + timedelta(seconds=60)),
             AgentStatus(device_id="box1", fleet="f", online=True, at=t0 + timedelta(seconds=61), busy_job_id="j1"),
             AgentStatus(device_id="box1", fleet="f", online=True, at=t0 + timedelta(seconds=62), busy_job_id="j1")]

    class Fleet:
        statuses: dict[str, AgentStatus] = {}

        def pump(self, _timeout: float) -> None:
            self.statuses["box1"] = sends.pop(0) if sends else self.statuses["box1"]

    buf = StringIO()
    _watch(Fleet(), Output(console=Console(file=buf, force_terminal=False)), "f", duration=0.05)  # type: ignore[arg-type]
    while sends:  # a slow machine may not have pumped all four in 50 ms
        _watch(Fleet(), Output(console=Console(file=buf, force_terminal=False)), "f", duration=0.05)  # type: ignore[arg-type]
    lines = buf.getvalue().splitlines()
    assert len(lines) >= 1 and lines[0].startswith("box1\t")


# -- read-only commands, version, help, extras ---------------------------------------------------------


def test_read_only_commands_do_not_create_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "results.db"
    for args in (["results"], ["report"], ["results", "show", "job-1"], ["jobs"],
                 ["results", "export", "--out", str(tmp_path / "x.csv")]):
        out = runner.invoke(app, ["--store", f"sqlite:///{missing}", *args])
        assert out.exit_code == 1, (args, out.output)
        assert f"no results store at {missing}" in out.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_version_is_the_real_one() -> None:
    proc = subprocess.run([*CONTROLLER, "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == f"controller (edgebench) {edgebench_version()}"
    assert "unknown" not in proc.stdout and edgebench_version() not in ("0+unknown", "0.0.0")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    if head:  # a checkout: the version names the commit it is at
        assert f"g{head}" in edgebench_version()


def test_help_shows_defaults_valid_values_and_an_example() -> None:
    out = runner.invoke(app, ["dispatch", "--help"], env={"COLUMNS": "300"})
    assert out.exit_code == 0
    for text in ("keras-jax", "keras-mxnet", "fashion-mnist-mlp", "synthetic-resnet50", "default: 86400",
                 "Example: controller dispatch"):
        assert text in out.stdout, text
    root = runner.invoke(app, ["--help"], env={"COLUMNS": "300"})
    assert "--install-completion" in root.stdout and "Exit codes" in root.stdout


def test_a_missing_extra_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "r.db"
    shutil.copy(REPO / "tests" / "fixtures" / "report_store.sqlite", store)
    monkeypatch.setitem(sys.modules, "edgebench.controller.render.html", None)  # as without matplotlib
    out = runner.invoke(app, ["--store", f"sqlite:///{store}", "report", "--format", "html"])
    assert out.exit_code == 1
    (line,) = out.stderr.strip().splitlines()
    assert "the 'report' extra" in line and "edgebench[report]" in line
