"""The agent daemon against a real Mosquitto, as separate processes."""

from __future__ import annotations

import signal
import time

import pytest

from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import build_job
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobState
from tests.helpers import RawClient, run_jobs, sleep_job, wait_online


def test_dispatch_sleep_job_result_stored(start_agent, controller_cfg):
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "box1", agents=[agent])
        # 20 batches of 10 ms: a window long enough for a few telemetry samples at 10 Hz
        events = run_jobs(fleet, [Dispatched("box1", sleep_job("j-sleep-1", steps=20))])
    states = [e.state for e in events]
    assert states[0] == JobState.QUEUED
    assert JobState.IN_PROGRESS in states
    assert states[-1] == JobState.SUCCEEDED
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    [row] = store.results(job_id="j-sleep-1")
    assert row.outcome == "OK" and row.img_per_s and row.img_per_s > 0
    res = row.result()
    assert res is not None
    assert res.summary.n_batches == 20  # one measured epoch of 20 batches; the warm-up epoch excluded
    assert [e.warmup for e in res.runs[0].epochs] == [True, False]
    assert res.fingerprint.cpu_cores_logical >= 1 and res.fingerprint.ram_bytes > 0
    # no GPU here: GPU figures are absent (never zero), the runner's CPU and RSS are measured
    tel = res.telemetry
    assert tel is not None and tel.source == "none" and tel.gpus == []
    assert tel.energy_j is None and tel.img_per_j is None
    assert tel.rss_bytes_peak and tel.rss_bytes_peak > 1_000_000
    assert res.timeseries is not None and res.timeseries.window is not None


def test_two_agents_at_once(start_agent, controller_cfg):
    agents = [start_agent("box-a"), start_agent("box-b")]
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "box-a", "box-b", agents=agents)
        targets = fleet.resolve_targets(all_online=True, wait_s=0.5)
        assert targets == ["box-a", "box-b"]
        job = sleep_job("j-two", epochs=3)
        run_jobs(fleet, [Dispatched(d, job) for d in targets])
    rows = store.results(job_id="j-two")
    assert sorted(r.device_id for r in rows) == ["box-a", "box-b"]
    assert all(r.outcome == "OK" for r in rows)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["body"]["workload"].__setitem__("batch_size", "32"), "workload.batch_size"),
        (lambda d: d["body"].__setitem__("surprise", 1), "surprise"),
        (lambda d: d["body"].__setitem__("backend", "caffe"), "backend"),
        (lambda d: d["body"]["workload"].__setitem__("dataset", "cifar100"), "workload.dataset"),
        (lambda d: d["body"]["workload"].__setitem__("epochs", 0), "workload.epochs"),
        (lambda d: d.__setitem__("schema_version", "edgebench/v0"), "schema_version"),
    ],
)
def test_bad_job_rejected_naming_the_field(start_agent, mosquitto, fleet, controller_cfg, mutate, field):
    import json

    from edgebench.schemas import Envelope
    from edgebench.schemas.envelope import encode

    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    raw = RawClient(mosquitto.url, fleet, "box1")
    try:
        doc = json.loads(encode(Envelope.of(sender="t", body=sleep_job("j-bad"))))
        mutate(doc)
        raw.send(doc)
        [ev] = raw.events(15, until=lambda evs: bool(evs))
        assert ev.state == JobState.REJECTED
        assert ev.field == field, ev
        assert ev.job_id == "j-bad"
        # the agent keeps serving
        raw.send_job(sleep_job("j-good"))
        evs = raw.events(30, until=lambda evs: evs[-1].state == JobState.SUCCEEDED)
        assert evs[-1].state == JobState.SUCCEEDED
    finally:
        raw.close()
    assert agent.proc.poll() is None


def test_garbage_and_unsupported_model_dataset_rejected(start_agent, mosquitto, fleet, controller_cfg):
    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    raw = RawClient(mosquitto.url, fleet, "box1")
    try:
        raw.send(b"\x00\xffnot json")
        raw.send(b"[1, 2, 3]")
        raw.send(b"x" * 300_000)  # over the default 256 KiB cap
        raw.send_job(build_job({"backend": "sleep", "workload": "fashion-mnist-mlp", "synthetic": True},
                               "j-gpu", None).model_copy(update={"gpus": 4}))
        evs = raw.events(15, until=lambda evs: len(evs) == 4)
        assert [e.state for e in evs] == [JobState.REJECTED] * 4
        assert [e.field for e in evs] == ["payload", "payload", "payload", "gpus"]
        assert "exceeds" in (evs[2].reason or "")
    finally:
        raw.close()
    assert agent.proc.poll() is None


def test_duplicate_delivery_runs_and_stores_once(start_agent, mosquitto, fleet, controller_cfg):
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        job = sleep_job("j-dup")
        plan = [Dispatched("box1", job)]
        fc.dispatch(plan)
        fc.dispatch(plan)  # the broker may redeliver: same job twice
        still = fc.wait({("j-dup", "box1")}, 60)
        assert not still
        time.sleep(0.5)
        fc.pump(0.5)
    assert len(store.results(job_id="j-dup")) == 1
    events = store.events_for("j-dup")
    assert [e.state for e in events].count(JobState.QUEUED) == 1
    assert [e.state for e in events].count(JobState.SUCCEEDED) == 1


def test_agent_restart_while_idle(start_agent, controller_cfg):
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        agent.stop(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fc.statuses["box1"].online:
            fc.pump(0.2)
        assert not fc.statuses["box1"].online  # clean stop publishes the offline status
        agent.start()
        wait_online(fc, "box1", agents=[agent])
        run_jobs(fc, [Dispatched("box1", sleep_job("j-after-restart"))])
    assert store.results(job_id="j-after-restart")[0].outcome == "OK"


def test_last_will_marks_a_killed_agent_offline(start_agent, controller_cfg):
    agent = start_agent("box1", extra=[])
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
        agent.stop(signal.SIGKILL)
        deadline = time.monotonic() + 90  # keepalive 30 s x 1.5
        while time.monotonic() < deadline and fc.statuses["box1"].online:
            fc.pump(0.5)
        assert not fc.statuses["box1"].online
