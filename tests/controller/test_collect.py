"""``controller collect`` as a long-lived process: results land in the store
with no CLI waiting, including those published while the collector was down
or killed halfway through a batch."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from typer.testing import CliRunner

from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.controller.cli import app
from edgebench.controller.config import ControllerConfig
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import Envelope, ErrorType, JobEvent, JobState, Progress, topics
from edgebench.schemas.envelope import encode
from tests.conftest import REPO
from tests.helpers import sleep_job, wait_online


class Collector:
    """``controller collect`` in its own process."""

    def __init__(self, cfg: ControllerConfig, log_path: Path):
        self.cfg = cfg
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgebench.controller.cli", "--broker", self.cfg.broker_url,
             "--fleet", self.cfg.fleet,
             "--store", self.cfg.store_url, "collect"],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        deadline = time.monotonic() + 30
        while "collecting fleet" not in self.log_path.read_text()[offset:]:
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "collector did not start"
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


def _cli(cfg: ControllerConfig, *args: str) -> str:
    out = CliRunner().invoke(app, ["--broker", cfg.broker_url, "--fleet", cfg.fleet, "--store", cfg.store_url,
                                   *args])
    assert out.exit_code == 0, out.output
    return out.output


def _dispatch_no_wait(cfg: ControllerConfig) -> str:
    out = _cli(cfg, "dispatch", "-d", "box1", "-b", "sleep", "-w", "fashion-mnist-mlp", "--synthetic",
               "--steps-per-epoch", "2", "--no-wait")
    job_id, _device = out.strip().splitlines()[-1].split("\t")
    return job_id


def _wait(pred, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _agent_done(agent, job_id: str) -> bool:
    """The agent finished the job and the broker acknowledged all its events."""
    db = sqlite3.connect(f"file:{agent.state_dir / 'agent.db'}?mode=ro", uri=True)
    try:
        state = db.execute("SELECT state FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    return state is not None and state[0] == "SUCCEEDED" and outbox == 0


def test_collector_stores_results_while_no_cli_waits(start_agent, controller_cfg, tmp_path):
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
    collector = Collector(controller_cfg, tmp_path / "collector.log").start()
    try:
        first = _dispatch_no_wait(controller_cfg)
        [row] = _wait(lambda: store.results(job_id=first), 30, "the first result")
        assert row.outcome == "OK"

        collector.stop()
        second = _dispatch_no_wait(controller_cfg)
        _wait(lambda: _agent_done(agent, second), 30, "the agent to finish the second job")
        assert store.results(job_id=second) == []  # nobody listened

        collector.start()  # its persistent session kept the events meanwhile
        [row] = _wait(lambda: store.results(job_id=second), 30, "the second result")
        assert row.outcome == "OK"
        seqs = [e.seq for e in store.events_for(second)]
        assert seqs == list(range(len(seqs))) and len(seqs) >= 4
    finally:
        collector.stop()


def _synthetic_events(device_id: str, jobs: int, per_job: int) -> list[JobEvent]:
    """What an agent publishes: progress events, then a terminal one, per job."""
    now = datetime.now(timezone.utc)
    out = []
    for j in range(jobs):
        for seq in range(per_job):
            last = seq == per_job - 1
            out.append(JobEvent(
                job_id=f"syn-{j:04d}", device_id=device_id, seq=seq, at=now,
                state=JobState.FAILED if last else JobState.IN_PROGRESS,
                progress=None if last else Progress(phase="measure", epoch=seq, epochs=per_job),
                error_type=ErrorType.OOM if last else None, reason="synthetic" if last else None))
    return out


def test_collector_killed_mid_batch_loses_nothing(controller_cfg, tmp_path):
    """Events reach the store at least once even if the collector dies between
    receiving and storing them: it acknowledges each only once stored."""
    store = ResultStore(controller_cfg.store_url)
    for j in range(60):  # events of jobs this store never dispatched would be kept aside
        store.record_dispatch("sim1", sleep_job(f"syn-{j:04d}"))
    collector = Collector(controller_cfg, tmp_path / "collector.log").start()
    events = _synthetic_events("sim1", jobs=60, per_job=50)
    pub = MqttClient(BrokerSettings.from_url(controller_cfg.broker_url), f"sim-{controller_cfg.fleet}")
    pub.connect()
    try:
        topic = topics.events(controller_cfg.fleet, "sim1")
        for ev in events:
            pub.publish(topic, encode(Envelope.of(sender="sim1", body=ev)))
        _wait(lambda: store.count("events") > 200, 30, "the collector to be busy")
        collector.stop(signal.SIGKILL)
        stored_at_kill = store.count("events")
        collector.start()
        _wait(lambda: store.count("events") == len(events), 60,
              f"all {len(events)} events (killed at {stored_at_kill})")
    finally:
        collector.stop()
        pub.close()
    assert store.count("results") == 60
    assert {r.outcome for r in store.results()} == {"OOM"}
