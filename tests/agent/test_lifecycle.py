"""The job lifecycle against a real Mosquitto and a real agent process:
timeouts, cancel, runner crash and OOM, the size cap, the image allowlist.

Faults come from the diagnostic ``sleep`` runner (EDGEBENCH_SLEEP_FAULT in the
agent's backend config, see runner/sleep.py)."""

from __future__ import annotations

import time

from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.store import ResultStore
from edgebench.schemas import ErrorType, JobEvent, JobState, Result
from edgebench.schemas.telemetry import TimeSeries
from tests.agent.conftest import all_gone, sleep_backend, wait_runner_tree, wait_until, write_agent_config
from tests.helpers import RawClient, sleep_job, wait_online

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED}


def _agent(start_agent, tmp_path, fault=None, **cfg):
    config = write_agent_config(tmp_path / "agent.yaml", backends=sleep_backend(fault), **cfg)
    return start_agent("box1", config=config)


def test_progress_rearms_the_step_timeout(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path)
    wait_online(watcher.fc, "box1", agents=[agent])
    # 3 epochs of 1.2 s: the job runs ~3.6 s, longer than step_timeout_s, but the
    # runner reports progress every second, and each report re-arms the timeout.
    watcher.dispatch("box1", sleep_job("j-long", epochs=3, steps=120, step_timeout_s=2.0))
    ev = watcher.wait_for("j-long", TERMINAL, 60, agent)
    assert ev.state == JobState.SUCCEEDED, ev


def test_silent_runner_times_out_and_its_process_group_dies(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path, fault="hang")
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-hang", step_timeout_s=1.5))
    watcher.wait_for("j-hang", JobState.IN_PROGRESS, 30, agent)
    # the runner and the child it started (a stand-in for a data-loader worker)
    procs = wait_runner_tree(agent, 2)
    ev = watcher.wait_for("j-hang", TERMINAL, 30, agent)
    assert ev.state == JobState.TIMED_OUT, ev
    assert "step_timeout_s=1.5" in (ev.reason or "")
    wait_until(lambda: all_gone(procs), 10, "runner processes to die")
    store = ResultStore(watcher.fc.cfg.store_url)
    assert store.results(job_id="j-hang")[0].outcome == "TIMED_OUT"


def test_overall_timeout_and_the_queue_goes_on(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path)
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-slow", epochs=2, steps=500, timeout_s=1.5),
                     sleep_job("j-next"))
    ev = watcher.wait_for("j-slow", TERMINAL, 30, agent)
    assert ev.state == JobState.TIMED_OUT and "timeout_s=1.5" in (ev.reason or ""), ev
    assert watcher.wait_for("j-next", TERMINAL, 30, agent).state == JobState.SUCCEEDED


def _cli_cancel(cfg, job_id: str):
    out = CliRunner().invoke(app, ["--broker", cfg.broker_url, "--fleet", cfg.fleet, "--store", cfg.store_url,
                                   "cancel", job_id])
    assert out.exit_code == 0, out.output
    return out


def test_cancel_queued_and_running_jobs(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path, fault="hang")  # a running job only ends by cancel
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-run"), sleep_job("j-queued"))
    watcher.wait_for("j-queued", JobState.QUEUED, 30, agent)
    watcher.wait_for("j-run", JobState.IN_PROGRESS, 30, agent)
    procs = wait_runner_tree(agent, 2)

    _cli_cancel(watcher.fc.cfg, "j-queued")
    assert watcher.wait_for("j-queued", TERMINAL, 10, agent).state == JobState.CANCELED
    assert JobState.IN_PROGRESS not in {e.state for e in watcher.of("j-queued")}

    t0 = time.monotonic()
    _cli_cancel(watcher.fc.cfg, "j-run")
    ev = watcher.wait_for("j-run", TERMINAL, 10, agent)
    assert ev.state == JobState.CANCELED, ev
    assert time.monotonic() - t0 < 2.0
    wait_until(lambda: all_gone(procs), 10, "runner processes to die")
    store = ResultStore(watcher.fc.cfg.store_url)
    assert {r.job_id: r.outcome for r in store.results()} == {"j-run": "CANCELED", "j-queued": "CANCELED"}
    assert agent.proc.poll() is None


def test_runner_crash_is_failed_with_the_stderr_tail(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path, fault="crash")
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-crash"))
    ev = watcher.wait_for("j-crash", TERMINAL, 30, agent)
    assert ev.state == JobState.FAILED and ev.error_type == ErrorType.RUNNER_CRASH, ev
    assert "status 3" in (ev.reason or "")
    assert "simulated crash" in (ev.log_tail or "")


def test_oom_is_recorded_as_an_outcome_and_the_agent_goes_on(start_agent, watcher, tmp_path):
    agent = _agent(start_agent, tmp_path, fault="oom")
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-oom-1"), sleep_job("j-oom-2"))
    for job_id in ("j-oom-1", "j-oom-2"):
        ev = watcher.wait_for(job_id, TERMINAL, 30, agent)
        assert ev.state == JobState.FAILED and ev.error_type == ErrorType.OOM, ev
    rows = ResultStore(watcher.fc.cfg.store_url).results()
    assert sorted((r.job_id, r.outcome, r.error_type) for r in rows) == [
        ("j-oom-1", "OOM", "OOM"), ("j-oom-2", "OOM", "OOM")]
    # a failed job is still described in its report cell
    assert rows[0].model == "mlp" and rows[0].batch_size == 32


def test_docker_image_off_the_allowlist_is_rejected(start_agent, watcher, tmp_path, mosquitto, fleet):
    config = write_agent_config(
        tmp_path / "agent.yaml",
        backends={"sleep": {"executor": "local"},
                  "torch": {"executor": "docker", "image": "evil/miner:latest"}},
        image_allowlist=["edgebench/runner-torch:1"],
    )
    agent = start_agent("box1", config=config)
    statuses = wait_online(watcher.fc, "box1", agents=[agent])
    [torch] = [b for b in statuses["box1"].backends if b.backend == "torch"]
    assert not torch.available and "image_allowlist" in torch.detail
    raw = RawClient(mosquitto.url, fleet, "box1")
    try:
        raw.send_job(sleep_job("j-docker", backend="torch"))
        [ev] = raw.events(15, until=lambda evs: bool(evs))
    finally:
        raw.close()
    assert ev.state == JobState.REJECTED and ev.field == "backend", ev
    assert "image_allowlist" in (ev.reason or "")
    # the rest of the agent works
    watcher.dispatch("box1", sleep_job("j-ok"))
    assert watcher.wait_for("j-ok", TERMINAL, 30, agent).state == JobState.SUCCEEDED


def test_events_over_max_event_bytes_are_trimmed(start_agent, watcher, tmp_path):
    # a 10 ms sampler over a ~2.5 s job gives a timeseries of ~250 rows: far
    # over 5 kB, while the result without it (~3 kB) fits
    agent = _agent(start_agent, tmp_path, max_event_bytes=5000, sample_interval_s=0.01)
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-big", epochs=2, steps=120))
    ev = watcher.wait_for("j-big", TERMINAL, 60, agent)
    assert ev.state == JobState.SUCCEEDED, ev
    assert ev.result is not None and ev.result.timeseries is None
    assert "result.timeseries" in (ev.reason or "")
    assert ev.result.knobs.get("event_trimmed") == "result.timeseries"
    assert len(ev.model_dump_json()) < 5000


def _event(state: JobState, **fields) -> JobEvent:
    from datetime import datetime, timezone

    return JobEvent(job_id="j", device_id="box1", seq=3, state=state, at=datetime.now(timezone.utc), **fields)


def _real_result(tmp_path) -> Result:
    """A Result as the agent builds it, from a real sleep runner."""
    from edgebench.agent.config import LocalBackend
    from edgebench.agent.executors import LocalExecutor, install_runner_code
    from edgebench.agent.fingerprint import machine_fingerprint
    from edgebench.agent.jobrun import JobRun

    run = JobRun(job=sleep_job("j"), attempt=1, device_id="box1",
                 executor=LocalExecutor(LocalBackend(), install_runner_code(tmp_path / "code")),
                 job_dir=tmp_path / "job", dataset_root=tmp_path,
                 fingerprint=lambda libs: machine_fingerprint(libs, []), on_progress=lambda p: None)
    outcome = run.run()
    assert outcome.result is not None, outcome
    return outcome.result


def test_encode_event_trims_in_order(tmp_path):
    import json

    from edgebench.agent.eventsize import encode_event
    from edgebench.schemas.envelope import decode

    big_ts = TimeSeries(t_s=[i * 0.1 for i in range(20_000)], columns={"cpu_pct": [50.0] * 20_000})
    result = _real_result(tmp_path).model_copy(update={"timeseries": big_ts})
    ok = _event(JobState.SUCCEEDED, result=result)
    small = decode(encode_event(ok, "box1", 10**7), 10**7).body
    assert small.result.timeseries is not None and small.reason is None  # under the cap: untouched

    trimmed = decode(encode_event(ok, "box1", 20_000)).body
    assert trimmed.result.timeseries is None and trimmed.result.runs[0].epochs
    assert trimmed.result.knobs["event_trimmed"] == "result.timeseries"

    tail = "".join(f"line {i}: ünïcode noise\n" for i in range(800))
    failed = _event(JobState.FAILED, reason="runner exited with status 1", log_tail=tail[-20000:])
    payload = encode_event(failed, "box1", 8_000)
    assert len(payload) <= 8_000
    body = decode(payload).body
    assert body.log_tail and tail.endswith(body.log_tail)  # the end of the log is kept
    assert body.reason.startswith("runner exited with status 1; ") and "log_tail" in body.reason

    # pathological: even the result without series and epochs is too big
    knobs = {f"k{i}": "v" * 50 for i in range(200)}
    huge = ok.model_copy(update={"result": result.model_copy(update={"knobs": knobs})})
    payload = encode_event(huge, "box1", 8_000)
    body = json.loads(payload)["body"]
    assert len(payload) <= 8_000 and body["result"] is None
    assert body["reason"].endswith("dropped result.timeseries, result.runs.epochs, result")
