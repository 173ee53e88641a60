"""Hostile copies of jobs, hostile ids and unsigned cancels against a real agent.

Each test is a defect of the hostile review (2026-12-01), end to end over a
real Mosquitto: before the fix, a rejected copy's answer landed on the real
job's event stream and replaced its result; an unsigned cancel was obeyed by an
agent that requires signed jobs; a job id `[/x]` crashed `controller collect`
and every `controller results`; a newline in a job id forged a log line; a
lone surrogate got no answer at all.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from edgebench.common.signing import generate_keypair, save_private_key, save_public_key
from edgebench.controller.cli import app
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import CancelRequest, Envelope, JobState
from edgebench.schemas.envelope import encode
from tests.agent.conftest import Watcher, sleep_backend, write_agent_config
from tests.conftest import REPO
from tests.helpers import RawClient, sleep_job, wait_online

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED}


def _bad_copy(job_id: str) -> dict:  # type: ignore[type-arg]
    """A copy of a job that fails validation but carries the real job's id."""
    doc = json.loads(encode(Envelope.of(sender="attacker", body=sleep_job(job_id))))
    doc["body"]["workload"]["batch_size"] = -1
    return doc


def test_a_bad_copy_of_a_running_job_does_not_touch_its_result(start_agent, controller_cfg, mosquitto, fleet,
                                                                tmp_path) -> None:
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        w = Watcher(fc)
        raw = RawClient(mosquitto.url, fleet, "box1")
        try:
            raw.send(_bad_copy("j-early"))  # the copy first: before the fix both got seq 0
            w.dispatch("box1", sleep_job("j-early"), sleep_job("j-running", epochs=2, steps=100))
            w.wait_for("j-running", JobState.IN_PROGRESS, 30, agent)
            raw.send(_bad_copy("j-running"))
            for job_id in ("j-early", "j-running"):
                assert w.wait_for(job_id, TERMINAL, 60, agent).state is JobState.SUCCEEDED
            answers = raw.events(5, until=lambda evs: sum(e.state is JobState.REJECTED for e in evs) >= 2)
        finally:
            raw.close()
    rejected = [e for e in answers if e.state is JobState.REJECTED]
    assert {e.job_id for e in rejected} == {"j-early", "j-running"}
    assert all(e.attempt == 0 and e.in_reply_to for e in rejected)
    for job_id in ("j-early", "j-running"):
        [row] = store.results(job_id=job_id)
        assert (row.outcome, row.attempt) == ("OK", 1) and row.img_per_s
        assert store.job_states([(job_id, "box1")]) == {(job_id, "box1"): "SUCCEEDED"}
    assert len(store.dead_letters()) == 2  # the answers to the copies: kept aside, not the jobs'


def test_signed_agent_ignores_unsigned_copies_and_cancels(start_agent, controller_cfg, mosquitto, fleet,
                                                          tmp_path) -> None:
    private, public = generate_keypair()
    save_private_key(private, tmp_path / "jobs.key")
    save_public_key(public, tmp_path / "jobs.pub")
    config = write_agent_config(tmp_path / "a.yaml", backends=sleep_backend(),
                                job_public_key=str(tmp_path / "jobs.pub"))
    agent = start_agent("box1", config=config)
    cfg = controller_cfg.model_copy(update={"signing_key": tmp_path / "jobs.key"})
    store = ResultStore(cfg.store_url)
    with FleetClient(cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        w = Watcher(fc)
        raw = RawClient(mosquitto.url, fleet, "box1")
        try:
            w.dispatch("box1", sleep_job("j-signed", epochs=2, steps=150), sleep_job("j-victim", epochs=2, steps=20))
            w.wait_for("j-signed", JobState.IN_PROGRESS, 30, agent)
            raw.send_job(sleep_job("j-signed"))  # an unsigned, otherwise valid copy of the running job
            raw.send(encode(Envelope.of(sender="attacker", body=CancelRequest(job_id="j-signed"))))
            raw.send(encode(Envelope.of(sender="attacker", body=CancelRequest(job_id="j-victim"))))  # queued
            assert w.wait_for("j-signed", TERMINAL, 60, agent).state is JobState.SUCCEEDED
            assert w.wait_for("j-victim", TERMINAL, 60, agent).state is JobState.SUCCEEDED
            # a signed cancel is still obeyed
            w.dispatch("box1", sleep_job("j-stop", epochs=2, steps=3000))
            w.wait_for("j-stop", JobState.IN_PROGRESS, 30, agent)
            fc.cancel("j-stop", ["box1"])
            assert w.wait_for("j-stop", TERMINAL, 30, agent).state is JobState.CANCELED
            answers = raw.events(5, until=lambda evs: sum(e.state is JobState.REJECTED for e in evs) >= 3)
        finally:
            raw.close()
    rejected = [e for e in answers if e.state is JobState.REJECTED]
    assert sorted((e.job_id, e.field) for e in rejected) == [
        ("j-signed", "signature"), ("j-signed", "signature"), ("j-victim", "signature")]
    assert store.results(job_id="j-signed")[0].outcome == "OK"


def test_hostile_ids_get_an_answer_and_print_harmlessly(start_agent, controller_cfg, mosquitto, fleet,
                                                        tmp_path) -> None:
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    log = (tmp_path / "collector.log").open("wb")
    collector = subprocess.Popen(
        [sys.executable, "-m", "edgebench.controller.cli", "--broker", mosquitto.url, "--fleet", fleet,
         "--store", controller_cfg.store_url, "collect"], stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    hostile = ["[/x]", "a\n2026-12-01 00:00:00 INFO edgebench.agent: forged line", "\x1b[2J\x1b[31mred",
               "nul\x00byte", "\ud800", "[bold red]markup[/bold red]"]
    try:
        with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
            wait_online(fc, "box1", agents=[agent])
        raw = RawClient(mosquitto.url, fleet, "box1")
        try:
            for job_id in hostile:
                doc = json.loads(encode(Envelope.of(sender="attacker", body=sleep_job("placeholder"))))
                doc["body"]["job_id"] = job_id
                raw.send(json.dumps(doc))  # a lone surrogate goes out as its \\ud800 escape
            answers = raw.events(20, until=lambda evs: len(evs) >= len(hostile))
        finally:
            raw.close()
        assert len(answers) == len(hostile), agent.log()[-3000:]
        assert all(e.state is JobState.REJECTED and e.job_id == "-" for e in answers)
        # "payload" for the lone surrogate: \ud800 is not text, the message does not parse at all
        assert all(e.field in ("job_id", "payload") for e in answers), [e.field for e in answers]
        time.sleep(1.0)
        assert collector.poll() is None, (tmp_path / "collector.log").read_text()
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(30)
        log.close()
    out = CliRunner().invoke(app, ["--store", controller_cfg.store_url, "results"])
    assert out.exit_code == 0, out.output
    lines = agent.log().splitlines()
    assert not any(line.startswith("2026-12-01 00:00:00 INFO") for line in lines), "a log line was forged"
    assert not any("\x1b" in line or "\x00" in line for line in lines)
    assert sum("REJECTED message" in line for line in lines) >= len(hostile)  # one line each, ids not echoed
    assert agent.proc.poll() is None


def test_every_answer_goes_out_even_for_an_unencodable_id(start_agent, mosquitto, fleet, tmp_path) -> None:
    """A lone surrogate in a job id made the old agent raise inside its store and publish nothing."""
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    raw = RawClient(mosquitto.url, fleet, "box1")
    try:
        deadline = time.monotonic() + 60
        while "connected to the broker" not in agent.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        raw.send(b'{"schema_version": "edgebench/v1", "sender": "x", "body": {"kind": "job", "job_id": "\\ud800"}}')
        [answer] = raw.events(15, until=lambda evs: len(evs) >= 1)
    finally:
        raw.close()
    assert answer.state is JobState.REJECTED and answer.attempt == 0
    assert "Traceback" not in agent.log()


def test_dispatched_plan_for_two_jobs_still_runs(start_agent, controller_cfg) -> None:
    """Control: the ordinary path is untouched by the integrity changes."""
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        fc.dispatch([Dispatched("box1", sleep_job("c1")), Dispatched("box1", sleep_job("c2"))])
        assert not fc.wait({("c1", "box1"), ("c2", "box1")}, 60)
    assert {r.job_id: r.outcome for r in store.results()} == {"c1": "OK", "c2": "OK"}
