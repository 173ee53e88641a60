"""Record a results store from REAL runs, for the report tests and the example report.

It starts a broker (Mosquitto when installed, else the embedded amqtt one),
real ``agent run`` processes, dispatches a sweep to each device in turn (one
device at a time, so that agents sharing a machine don't compete for its
cores) and leaves the controller's SQLite store behind. Nothing is simulated:
every number in the store is a measurement of the machine this runs on.

Profiles:

- ``tests``: tiny (seconds per job) -> tests/fixtures/report_store.sqlite
- ``example``: larger samples and 3 repeats -> docs/results/cpu-example/results.sqlite
- ``gpu``: one GPU device, run on a GPU machine (see docs/REPORTS.md) ->
  tests/fixtures/report_store_gpu.sqlite
- ``compare``: two rounds (sweeps) of the same two jobs with 8 repeats each, for
  ``controller compare`` -> tests/fixtures/compare_store.sqlite (with ``history``)
- ``history``: 18 rounds of one single-repeat job on one core, a run history
  for ``report --history``; merged into tests/fixtures/compare_store.sqlite
- ``ab``: 16 rounds of one job, tagged a, b, a, b, ...: two interleaved halves
  of one recording for ``compare`` (the same configuration twice, under the
  same machine conditions) and a 16-run history -> tests/fixtures/compare_store.sqlite

Devices on one CPU machine are told apart honestly: ``cpu-2core`` uses every
core, ``cpu-1core`` runs its agent (and so its runners) under ``taskset -c 0``.

    .venv/bin/python scripts/make_report_fixture.py --profile tests
    .venv/bin/python scripts/make_report_fixture.py --profile example
    python3 scripts/make_report_fixture.py --profile gpu --store sqlite:///$OUT/gpu.sqlite
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgebench.common.broker import EmbeddedBroker, free_port  # noqa: E402
from edgebench.controller.config import ControllerConfig  # noqa: E402
from edgebench.controller.fleet import Dispatched, FleetClient  # noqa: E402
from edgebench.controller.plan import build_job  # noqa: E402
from edgebench.controller.store import ResultStore  # noqa: E402


@dataclass(frozen=True)
class Device:
    device_id: str
    tags: tuple[str, ...]
    cpus: str | None = None  # taskset CPU list, None = all
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    devices: tuple[Device, ...]
    cases: tuple[dict[str, Any], ...]
    default_store: str
    common: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1  # the same cases again, one sweep per round (<sweep>-r00, -r01, ...): runs over time
    # job tags by round, cycled: ("a", "b") tags rounds a, b, a, b, ... as <sweep>-a / <sweep>-b, so that two
    # interleaved halves of one recording see the same machine conditions (compare's "same configuration")
    round_tags: tuple[str, ...] = ()


def _matrix(backends: list[str], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple({"backend": b, **row} for row in rows for b in backends)


CPU_BACKENDS = ["keras-jax", "keras-torch", "torch"]
PROFILES: dict[str, Profile] = {
    "tests": Profile(
        devices=(Device("cpu-2core", ("lab", "cpu")), Device("cpu-1core", ("lab", "cpu", "small"), cpus="0")),
        cases=_matrix(CPU_BACKENDS, [
            {"workload": "fashion-mnist-mlp", "batch_size": 32, "samples": 2048},
            {"workload": "fashion-mnist-mlp", "batch_size": 128, "samples": 4096},
            {"workload": "fashion-mnist-cnn", "batch_size": 32, "samples": 512},
        ]),
        common={"synthetic": True, "epochs": 2, "repeats": 2, "timeout_s": 600},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/report_store.sqlite'}",
    ),
    "example": Profile(
        devices=(Device("cpu-2core", ("lab", "cpu")), Device("cpu-1core", ("lab", "cpu", "small"), cpus="0")),
        cases=_matrix(CPU_BACKENDS, [
            {"workload": "fashion-mnist-mlp", "batch_size": 32, "samples": 8192},
            {"workload": "fashion-mnist-mlp", "batch_size": 128, "samples": 16384},
            {"workload": "fashion-mnist-mlp", "batch_size": 512, "samples": 16384},
            {"workload": "fashion-mnist-cnn", "batch_size": 32, "samples": 1024},
            {"workload": "fashion-mnist-cnn", "batch_size": 128, "samples": 1024},
        ]),
        common={"synthetic": True, "epochs": 2, "repeats": 3, "timeout_s": 900},
        default_store=f"sqlite:///{REPO / 'docs/results/cpu-example/results.sqlite'}",
    ),
    "gpu": Profile(
        devices=(Device("h200", ("lab", "gpu", "datacenter")),),
        cases=(
            *_matrix(["torch", "keras-jax", "keras-torch"], [
                {"workload": "fashion-mnist-mlp", "batch_size": 32, "samples": 60000},
                {"workload": "fashion-mnist-cnn", "batch_size": 32, "samples": 30000},
                {"workload": "synthetic-resnet50", "batch_size": 32, "steps_per_epoch": 20},
                {"workload": "synthetic-resnet50", "batch_size": 128, "steps_per_epoch": 10},
            ]),
            # a real out-of-memory cell (the 2019 study's "Out of Memory"): the
            # backend's own cap at 2 % of the card, far too little for bs 512
            {"backend": "torch", "workload": "synthetic-resnet50", "batch_size": 512, "steps_per_epoch": 5,
             "memory_policy": "fraction", "memory_fraction": 0.02},
        ),
        common={"synthetic": True, "epochs": 2, "repeats": 2, "gpus": 1, "timeout_s": 900},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/report_store_gpu.sqlite'}",
    ),
    "compare": Profile(
        devices=(Device("cpu-2core", ("lab", "cpu")),),
        cases=_matrix(["torch", "keras-jax"], [{"workload": "fashion-mnist-mlp", "batch_size": 128,
                                                "samples": 4096}]),
        common={"synthetic": True, "epochs": 2, "repeats": 8, "timeout_s": 900},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/compare_store.sqlite'}",
        rounds=2,
    ),
    # the same on one GPU (a quiet machine: the `device` tool's H200)
    "gpu-compare": Profile(
        devices=(Device("h200", ("lab", "gpu")),),
        cases=(
            {"backend": "torch", "workload": "fashion-mnist-mlp", "batch_size": 256, "samples": 60000},
            {"backend": "torch", "workload": "fashion-mnist-cnn", "batch_size": 256, "samples": 30000},
            {"backend": "torch", "workload": "synthetic-resnet50", "batch_size": 128, "steps_per_epoch": 30},
        ),
        common={"synthetic": True, "epochs": 2, "repeats": 8, "gpus": 1, "timeout_s": 600},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/compare_store_gpu.sqlite'}",
        rounds=2,
    ),
    "gpu-history": Profile(
        devices=(Device("h200", ("lab", "gpu")),),
        cases=({"backend": "torch", "workload": "fashion-mnist-mlp", "batch_size": 256, "samples": 60000},),
        common={"synthetic": True, "epochs": 2, "repeats": 1, "gpus": 1, "timeout_s": 300},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/history_store_gpu.sqlite'}",
        rounds=14,
    ),
    "ab": Profile(
        devices=(Device("cpu-2core", ("lab", "cpu")),),
        cases=({"backend": "torch", "workload": "fashion-mnist-mlp", "batch_size": 128, "samples": 8192},),
        common={"synthetic": True, "epochs": 3, "repeats": 3, "timeout_s": 600},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/compare_store.sqlite'}",
        rounds=16,
        round_tags=("a", "b"),
    ),
    # one core (taskset): a single-threaded runner loses its share of the core to other work, but never
    # waits on a second thread that lost its share (2-thread runs on the shared box vary 100-fold)
    "history": Profile(
        devices=(Device("cpu-1core", ("lab", "cpu", "small"), cpus="1"),),
        cases=({"backend": "torch", "workload": "fashion-mnist-mlp", "batch_size": 128, "samples": 8192},),
        common={"synthetic": True, "epochs": 3, "repeats": 1, "timeout_s": 600},
        default_store=f"sqlite:///{REPO / 'tests/fixtures/compare_store.sqlite'}",
        rounds=18,
    ),
}


class Broker:
    """Mosquitto from its binary when installed, else the embedded amqtt broker."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.embedded: EmbeddedBroker | None = None
        self.url = ""

    def __enter__(self) -> Broker:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto")
                                               else None)
        if binary is None:
            self.embedded = EmbeddedBroker().start()
            self.url = self.embedded.url
            return self
        port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmessage_size_limit 0\n"
                        "max_queued_messages 100000\nlog_dest stderr\nlog_type error\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        self.url = f"mqtt://127.0.0.1:{port}"
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def start_agent(dev: Device, broker_url: str, fleet: str, workdir: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "edgebench.agent.cli", "run", "--broker", broker_url, "--device-id", dev.device_id,
           "--fleet", fleet, "--state-dir", str(workdir / dev.device_id), "--dataset-root", str(workdir / "data"),
           "--log-level", "WARNING", *dev.extra]
    for tag in dev.tags:
        cmd += ["--tag", tag]
    if dev.cpus is not None:
        cmd = ["taskset", "-c", dev.cpus, *cmd]
    log = (workdir / f"{dev.device_id}.log").open("ab")
    return subprocess.Popen(cmd, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_online(fleet: FleetClient, device_id: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fleet.pump(0.2)
        status = fleet.statuses.get(device_id)
        if status is not None and status.online:
            return
        if proc.poll() is not None:
            raise SystemExit(f"agent {device_id} exited:\n{log.read_text()[-3000:]}")
    raise SystemExit(f"agent {device_id} did not come online")


def run(profile: Profile, store_url: str, sweep_id: str, only: list[str], logs: Path | None = None) -> None:
    devices = [d for d in profile.devices if not only or d.device_id in only]
    if store_url.startswith("sqlite:///"):
        path = Path(store_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = ResultStore(store_url)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgebench-fixture-")))
        broker = stack.enter_context(Broker(workdir))
        cfg = ControllerConfig(broker_url=broker.url, fleet="report", store_url=store_url)
        fleet = stack.enter_context(FleetClient(cfg, store))
        procs = {d.device_id: start_agent(d, broker.url, cfg.fleet, workdir) for d in devices}
        if logs is not None:  # runs last: after the agents stopped, before the workdir goes
            logs.mkdir(parents=True, exist_ok=True)
            stack.callback(lambda: [shutil.copy(p, logs) for p in workdir.glob("*.log")])
        stack.callback(lambda: [stop_agent(p) for p in procs.values()])
        for dev in devices:
            wait_online(fleet, dev.device_id, procs[dev.device_id], workdir / f"{dev.device_id}.log")
        for round_no, dev in ((r, d) for r in range(profile.rounds) for d in devices):
            # one device at a time: they may share this machine's cores
            sid = sweep_id if profile.rounds == 1 else f"{sweep_id}-r{round_no:02d}"
            tags = [f"{sweep_id}-{profile.round_tags[round_no % len(profile.round_tags)]}"] \
                if profile.round_tags else []
            plan = [Dispatched(dev.device_id, build_job({**profile.common, **case, "tags": tags},
                                                        f"{sid}-{dev.device_id}-{i:02d}", sid))
                    for i, case in enumerate(profile.cases)]
            fleet.dispatch(plan)
            started = time.monotonic()

            def show(ev: Any, new: bool, started: float = started) -> None:
                if new and ev.state.value in ("SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "CANCELED"):
                    rate = f"{ev.result.summary.window_img_per_s:,.1f} img/s" if ev.result else (ev.reason or "")[:80]
                    print(f"[{time.monotonic() - started:6.1f}s] {ev.device_id} {ev.job_id}: {ev.state.value} {rate}",
                          flush=True)

            still = fleet.wait({(p.job.job_id, p.device_id) for p in plan}, 3600, show)
            if still:
                raise SystemExit(f"jobs still open: {sorted(still)}")
        # presence goes offline as the agents stop: keep the last online status
        fleet.pump(0.5)
    store.close()
    if store_url.startswith("sqlite:///"):
        _compact(Path(store_url.removeprefix("sqlite:///")))


def _compact(path: Path) -> None:
    """Fold the WAL into the file and vacuum, so that one small file is committed."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("VACUUM")
    conn.close()


def merge(target_url: str, sources: list[Path]) -> None:
    """Copy every row of other SQLite stores into the target (same schema; duplicates ignored)."""
    ResultStore(target_url).close()  # create / migrate the target
    target = Path(target_url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(target)
    for i, src in enumerate(sources):
        conn.execute(f"ATTACH DATABASE ? AS src{i}", (str(src),))
        for table in ("jobs", "events", "results", "devices", "result_facts"):
            # the columns both have: a newer store may have gained some through migrations
            mine = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
            theirs = {r[1] for r in conn.execute(f"PRAGMA src{i}.table_info({table})")}
            if not theirs:
                continue  # an older store without this table (result_facts: backfilled below)
            cols = ", ".join(c for c in mine if c in theirs)
            conn.execute(f"INSERT OR IGNORE INTO {table} ({cols}) SELECT {cols} FROM src{i}.{table}")
        conn.commit()
        conn.execute(f"DETACH DATABASE src{i}")
    conn.close()
    store = ResultStore(target_url)
    store.backfill_facts()  # results merged from stores older than result_facts
    store.close()
    _compact(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="tests")
    parser.add_argument("--store", help="SQLAlchemy URL of the store to (re)create (default: the profile's).")
    parser.add_argument("--sweep-id", default=None, help="Sweep id (default: report-<profile>).")
    parser.add_argument("--device", action="append", default=[], help="Only these devices of the profile.")
    parser.add_argument("--logs", type=Path, help="Copy the agents' logs into this folder.")
    parser.add_argument("--merge", type=Path, action="append", default=[],
                        help="Instead of running: copy these SQLite stores into --store.")
    args = parser.parse_args()
    # stop the agents and the broker on SIGTERM/SIGINT too (a background job ignores SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    profile = PROFILES[args.profile]
    store_url = args.store or profile.default_store
    if args.merge:
        merge(store_url, args.merge)
        return
    run(profile, store_url, args.sweep_id or f"report-{args.profile}", args.device, args.logs)


if __name__ == "__main__":
    main()
