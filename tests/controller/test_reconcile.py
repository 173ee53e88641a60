"""Reconciliation: a job whose events the broker lost is recovered from its agent.

The hostile review's case (2026-12-01): kill the collector, then kill the broker
within its autosave interval; the events the broker had acknowledged are gone,
the job stays IN_PROGRESS at the controller while the agent knows it SUCCEEDED.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.config import ControllerConfig
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.reconcile import ReconcilePolicy, overdue, plan
from edgebench.controller.store import OpenJob, ResultStore
from edgebench.schemas import AgentStatus, JobState
from tests.agent.conftest import sleep_backend, wait_until, write_agent_config
from tests.helpers import sleep_job, wait_online

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _outbox_empty(agent) -> bool:  # type: ignore[no-untyped-def]
    import sqlite3

    db = sqlite3.connect(f"file:{agent.state_dir / 'agent.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]) == 0
    finally:
        db.close()


def _open(state: JobState, silent_s: float, reconciled_s: float | None = None, device: str = "d") -> OpenJob:
    return OpenJob("j", device, state, sleep_job("j", step_timeout_s=100.0), NOW - timedelta(seconds=silent_s),
                   None if reconciled_s is None else NOW - timedelta(seconds=reconciled_s))


def test_overdue() -> None:
    policy = ReconcilePolicy(grace_s=60, queued_after_s=600, every_s=300)
    assert not overdue(_open(JobState.IN_PROGRESS, 150), NOW, policy)  # within step timeout + grace
    assert overdue(_open(JobState.IN_PROGRESS, 161), NOW, policy)
    assert not overdue(_open(JobState.QUEUED, 599), NOW, policy)
    assert overdue(_open(JobState.DISPATCHED, 601), NOW, policy)
    assert not overdue(_open(JobState.DISPATCHED, 5000, reconciled_s=100), NOW, policy)  # asked recently


def test_offline_devices_are_not_asked() -> None:
    jobs = [_open(JobState.IN_PROGRESS, 9999, device="on"), _open(JobState.IN_PROGRESS, 9999, device="off")]
    statuses = {d: AgentStatus(device_id=d, fleet="f", online=d == "on", at=NOW) for d in ("on", "off")}
    report = plan(jobs, statuses, NOW)
    assert report.asked == {"on": ["j"]} and report.skipped_offline == [("j", "off")]


def test_events_the_broker_lost_are_replayed(start_agent, private_mosquitto, fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = ControllerConfig(broker_url=private_mosquitto.url, fleet=fleet,
                           store_url=f"sqlite:///{tmp_path / 'r.db'}")
    agent = start_agent("box1", broker_url=private_mosquitto.url,
                        config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(cfg.store_url)
    with FleetClient(cfg, store, collector=True) as fc:  # a persistent session, as `controller collect`
        wait_online(fc, "box1", agents=[agent])
        fc.dispatch([Dispatched("box1", sleep_job("j-lost", epochs=2, steps=200))])  # ~4 s
        wait_until(lambda: fc.pump(0.1) is not None and store.job_states([("j-lost", "box1")]).get(
            ("j-lost", "box1")) == "IN_PROGRESS", 30, "the job to start")
    # the collector is away; the agent finishes; the broker acknowledged every event, then dies unsaved
    wait_until(lambda: "job j-lost SUCCEEDED" in agent.log(), 60, "the agent to finish")
    wait_until(lambda: _outbox_empty(agent), 30, "the broker to acknowledge every event")
    assert private_mosquitto.proc is not None
    private_mosquitto.proc.kill()
    private_mosquitto.proc.wait(10)
    private_mosquitto.start()
    with FleetClient(cfg, store, collector=True) as fc:
        wait_online(fc, "box1", agents=[agent])
        fc.pump(2.0)
    assert store.job_states([("j-lost", "box1")])[("j-lost", "box1")] != "SUCCEEDED"  # the broker lost it
    out = CliRunner().invoke(app, ["--broker", cfg.broker_url, "--fleet", fleet, "--store", cfg.store_url,
                                   "reconcile", "--all-open", "--wait", "10"])
    assert out.exit_code == 0, out.output
    assert "1 resolved" in out.output, out.output
    [row] = store.results(job_id="j-lost")
    assert row.outcome == "OK" and row.img_per_s


def test_a_job_the_broker_never_delivered_is_sent_again(start_agent, private_mosquitto, fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The broker acknowledged the job to the controller, then died unsaved while the
    agent was away: the agent answers a replay request 'never received' (Lost) and
    the job is dispatched again."""
    cfg = ControllerConfig(broker_url=private_mosquitto.url, fleet=fleet,
                           store_url=f"sqlite:///{tmp_path / 'r.db'}")
    agent = start_agent("box1", broker_url=private_mosquitto.url,
                        config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(cfg.store_url)
    with FleetClient(cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
    agent.stop()
    with FleetClient(cfg, store) as fc:
        fc.dispatch([Dispatched("box1", sleep_job("j-never"))])  # queued in the agent's session
    assert private_mosquitto.proc is not None
    private_mosquitto.proc.kill()  # the queued job is gone with it
    private_mosquitto.proc.wait(10)
    private_mosquitto.start()
    agent.start()
    with FleetClient(cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
    out = CliRunner().invoke(app, ["--broker", cfg.broker_url, "--fleet", fleet, "--store", cfg.store_url,
                                   "reconcile", "--all-open", "--wait", "15"])
    assert out.exit_code == 0, out.output
    [row] = store.results(job_id="j-never")
    assert row.outcome == "OK", (row.outcome, row.reason)
    assert any(e.error_type is not None and e.error_type.value == "Lost" for e in store.events_for("j-never"))
