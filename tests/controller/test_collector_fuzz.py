"""Throw a burst of hostile, schema-valid events and statuses at a running collector.

The agent side has been fuzzed since the job-system issue; this is the
collector's turn (hostile review, 2026-12-01). Over a real Mosquitto, a real
``controller collect`` gets genuine streams of 40 dispatched jobs mixed with
more than 10,000 messages built to hurt: extreme integers and dates, long and
odd strings (markup, control characters, bidirectional overrides), unknown job
ids, forged transitions, answers nobody asked for, events on other devices'
topics, presence with absurd capabilities. Afterwards:

- the collector never died;
- every message is accounted for: stored as an event, kept aside as a dead
  letter, or a presence update; nothing vanished;
- no genuine result is corrupted: each of the 40 jobs has exactly its result;
- `controller results`, `report` (every format) and `results export` all run.

A separate test sends what the schema refuses but a store used to crash on
(a ``seq`` of 2**63): kept aside and acknowledged once, no crash loop.
"""

from __future__ import annotations

import json
import random
import signal
import string
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.controller.cli import app
from edgebench.controller.store import ResultStore
from edgebench.schemas import (
    AgentStatus,
    BackendInfo,
    Envelope,
    ErrorType,
    GpuInfo,
    JobEvent,
    JobState,
    Progress,
    topics,
)
from edgebench.schemas.base import MAX_INT32, MAX_INT64
from edgebench.schemas.envelope import encode
from tests.conftest import REPO
from tests.controller.fixtures_results import result_for
from tests.helpers import sleep_job

SEED = 20261201
DEVICES = [f"fz{i}" for i in range(5)]
GENUINE_PER_DEVICE = 8
HOSTILE = 10_500

NASTY = ["[/x]", "[bold red]x[/bold red]", "\x1b[2J\x1b[31m", "\x00", "\u202e", "\u200b", "\ufeff", "\r\n", "\t",
         "<script>alert(1)</script>", "%s%s%n", "{0}", "\\", '"', "'", "ü", "中文", "𝔘", "\U0010fffd", "\x7f", "\x85"]


def _text(rng: random.Random, limit: int) -> str:
    parts = []
    while sum(map(len, parts)) < rng.randint(0, limit):
        parts.append(rng.choice(NASTY) if rng.random() < 0.5 else "".join(
            rng.choice(string.printable) for _ in range(rng.randint(1, 40))))
    return "".join(parts)[:limit]


def _when(rng: random.Random) -> datetime:
    extreme = rng.choice([datetime(1, 1, 1, tzinfo=timezone.utc) + timedelta(days=2),
                          datetime(9999, 12, 30, tzinfo=timezone.utc),
                          datetime(1970, 1, 1, tzinfo=timezone.utc),
                          datetime.now(timezone(timedelta(hours=rng.randint(-23, 23), minutes=rng.choice([0, 59]))))])
    return extreme


def _int(rng: random.Random, top: int = MAX_INT32) -> int:
    return rng.choice([0, 1, top, top - 1, rng.randint(0, top)])


class Burst:
    def __init__(self, fleet: str, store: ResultStore) -> None:
        self.fleet = fleet
        self.store = store
        self.rng = random.Random(SEED)
        self.messages: list[tuple[str, bytes]] = []
        self.events = 0
        self.statuses = 0
        self.genuine: dict[tuple[str, str], float] = {}  # (job, device) -> its img/s

    def event(self, topic_device: str, ev: JobEvent) -> None:
        self.messages.append((topics.events(self.fleet, topic_device), encode(Envelope.of(sender=ev.device_id,
                                                                                           body=ev))))
        self.events += 1

    def genuine_jobs(self) -> None:
        for d in DEVICES:
            for j in range(GENUINE_PER_DEVICE):
                job = sleep_job(f"real-{d}-{j}")
                self.store.record_dispatch(d, job, msg_id=f"msg-{d}-{j}")
                res = result_for(job.job_id, d, job)
                self.genuine[(job.job_id, d)] = res.summary.window_img_per_s
                now = datetime.now(timezone.utc)
                for seq, state in enumerate((JobState.QUEUED, JobState.IN_PROGRESS, JobState.SUCCEEDED)):
                    self.event(d, JobEvent(job_id=job.job_id, device_id=d, seq=seq, state=state, at=now,
                                           result=res if state is JobState.SUCCEEDED else None))

    def hostile(self, n: int) -> None:
        rng = self.rng
        real = list(self.genuine)
        for i in range(n):
            kind = rng.choice(["forged", "unknown", "answer", "extreme", "wrong_topic", "status", "status"])
            if kind == "status":
                self.status(i)
                continue
            if kind in ("forged", "answer", "wrong_topic"):
                job_id, device = rng.choice(real)
            else:
                job_id, device = f"u{i}-{rng.randint(0, 10**9)}", rng.choice(DEVICES)
            state = rng.choice(list(JobState))
            fields: dict[str, Any] = {}
            attempt, seq = 1, 100 + i  # never a genuine key
            if kind == "answer":
                attempt = 0
                fields["in_reply_to"] = f"forged-{i}"
            if kind == "extreme" or rng.random() < 0.3:
                attempt, seq = rng.choice([0, 1, _int(rng)]), _int(rng)
                fields.update(reason=_text(rng, 4000), field=_text(rng, 500), log_tail=_text(rng, 20000),
                              error_type=rng.choice(list(ErrorType)))
                if state is JobState.IN_PROGRESS:
                    fields["progress"] = Progress(phase="measure", epoch=_int(rng), epochs=_int(rng), repeat=1,
                                                  img_per_s=rng.choice([1e308, 0.0, 5e-324]), loss=-1e308)
            ev = JobEvent(job_id=job_id, device_id=device, attempt=attempt, seq=seq, state=state, at=_when(rng),
                          **fields)
            topic_device = rng.choice([d for d in DEVICES if d != device]) if kind == "wrong_topic" else device
            self.event(topic_device, ev)

    def status(self, i: int) -> None:
        rng = self.rng
        device = rng.choice([*DEVICES, f"ghost{i % 50}"])
        status = AgentStatus(
            device_id=device, fleet=self.fleet, online=rng.random() < 0.5, at=_when(rng),
            agent_version=_text(rng, 200), tags=[f"t{rng.randint(0, 9)}"], host=_text(rng, 300),
            backends=[BackendInfo(backend=_text(rng, 30) or "x", available=rng.random() < 0.5, executor="local",
                                  detail=_text(rng, 500), versions={_text(rng, 20): _text(rng, 40)})],
            gpus=[GpuInfo(index=_int(rng), name=_text(rng, 100), mem_total_bytes=_int(rng, MAX_INT64))],
            busy_job_id=_text(rng, 200), queue_length=_int(rng))
        wrong = rng.random() < 0.2
        topic = topics.status(self.fleet, rng.choice(DEVICES) if wrong else device)
        self.messages.append((topic, encode(Envelope.of(sender=device, body=status))))
        self.statuses += 1

    def publish(self, url: str) -> None:
        client = MqttClient(BrokerSettings.from_url(url), f"fuzz-devices-{time.monotonic_ns()}", max_inflight=1000)
        client.connect()
        try:
            for topic, payload in self.messages:
                client.publish(topic, payload)
            # a last, genuine event: once stored, everything before it on the session was handled
            assert client.publish_and_wait(*self.sentinel(), timeout_s=60)
        finally:
            client.close()

    def sentinel(self) -> tuple[str, bytes]:
        job = sleep_job("sentinel")
        self.store.record_dispatch(DEVICES[0], job, msg_id="msg-sentinel")
        ev = JobEvent(job_id="sentinel", device_id=DEVICES[0], seq=0, state=JobState.FAILED,
                      at=datetime.now(timezone.utc), error_type=ErrorType.BACKEND_ERROR, reason="the sentinel")
        return topics.events(self.fleet, DEVICES[0]), encode(Envelope.of(sender=DEVICES[0], body=ev))


def _collector(mosquitto_url: str, fleet: str, store_url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgebench.controller.cli", "--broker", mosquitto_url, "--fleet", fleet,
         "--store", store_url, "collect", "--reconcile-every", "0"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=str(REPO))


def _wait_collecting(log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while "collecting fleet" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_burst_of_hostile_messages(mosquitto, fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    store = ResultStore(store_url)
    burst = Burst(fleet, store)
    burst.genuine_jobs()
    burst.hostile(HOSTILE)
    log = tmp_path / "collector.log"
    proc = _collector(mosquitto.url, fleet, store_url, log)
    try:
        _wait_collecting(log, proc)
        t0 = time.monotonic()
        burst.publish(mosquitto.url)
        deadline = time.monotonic() + 600
        while not store.results(job_id="sentinel"):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the collector did not get through the burst"
            time.sleep(0.5)
        took_s = time.monotonic() - t0
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    sent = burst.events + 1  # the sentinel
    stored, aside = store.count("events"), store.count("dead_letters")
    print(f"\ncollector fuzz: {len(burst.messages) + 1} messages ({sent} events, {burst.statuses} statuses) in "
          f"{took_s:.1f} s: {stored} events stored, {aside} kept aside", file=sys.stderr)
    assert len(burst.messages) >= 10_000
    # every event is stored or kept aside (none is an exact copy of another); a status is
    # stored for its device or, on another device's topic, kept aside
    wrong_topic_statuses = aside - (sent - stored)
    assert 0 <= wrong_topic_statuses <= burst.statuses
    for (job_id, device), rate in burst.genuine.items():
        [row] = store.results(job_id=job_id, device_id=device)
        assert (row.state, row.outcome, row.img_per_s) == ("SUCCEEDED", "OK", rate), row
    assert {r.job_id for r in store.results()} == {j for j, _ in burst.genuine} | {"sentinel"}
    for command in (["results"], ["report"], ["report", "-f", "md"], ["report", "-f", "json"], ["report", "-f", "html"],
                    ["results", "export", "-f", "csv", "--out", str(tmp_path / "x.csv")],
                    ["results", "export", "-f", "parquet", "--out", str(tmp_path / "x.parquet")],
                    ["dead-letters", "--json"], ["devices", "--help"]):
        out = CliRunner().invoke(app, ["--store", store_url, *command])
        assert out.exit_code == 0, (command, out.output[-2000:])
        assert "\x1b[2J" not in out.output and "\x00" not in out.output
    json.loads(CliRunner().invoke(app, ["--store", store_url, "dead-letters", "--json", "--limit", "5"]).output)


def test_a_message_the_store_cannot_hold_does_not_crash_loop(mosquitto, fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """seq >= 2**63 made the old collector raise OverflowError in SQLite and exit; the
    message, acknowledged only after storing, came back after every restart."""
    store_url = f"sqlite:///{tmp_path / 'overflow.db'}"
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("victim"), msg_id="m-victim")
    doc = json.loads(encode(Envelope.of(sender="box", body=JobEvent(
        job_id="victim", device_id="box", seq=0, state=JobState.QUEUED, at=datetime.now(timezone.utc)))))
    log = tmp_path / "collector.log"
    proc = _collector(mosquitto.url, fleet, store_url, log)
    client = MqttClient(BrokerSettings.from_url(mosquitto.url), f"overflow-{time.monotonic_ns()}")
    client.connect()
    try:
        _wait_collecting(log, proc)
        for name, value in (("seq", 2**63), ("attempt", 2**64), ("seq", 10**400)):
            bad = json.loads(json.dumps(doc))
            bad["body"][name] = value
            assert client.publish_and_wait(topics.events(fleet, "box"), json.dumps(bad).encode())
        good = json.loads(json.dumps(doc))
        assert client.publish_and_wait(topics.events(fleet, "box"), json.dumps(good).encode())
        deadline = time.monotonic() + 30
        while not store.events_for("victim") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        proc = _collector(mosquitto.url, fleet, store_url, log)  # its persistent session resumes
        _wait_collecting(log, proc)
        time.sleep(2)
        assert proc.poll() is None, log.read_text()
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert [e.seq for e in store.events_for("victim")] == [0]
    letters = store.dead_letters()
    assert len(letters) == 3, [d.reason for d in letters]  # each once: acknowledged, never redelivered
    assert all("not a valid message" in d.reason for d in letters)
