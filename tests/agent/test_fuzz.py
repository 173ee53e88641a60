"""Throw generated bad messages at a running agent over a real broker.

Every message must be answered and the agent must keep serving. The agent has
one backend, ``sleep``, whose interpreter does not exist, so even a job that
is valid by chance is answered: REJECTED naming ``backend``. The only message
that needs no answer is a valid cancel (of a job the agent never had).

Each example is checked locally first: ``decode`` (the agent's own parser)
may only raise DecodeError. Its verdict is the oracle: the agent's answers
arrive in order (one topic, QoS 1, one thread), so the k-th REJECTED must name
the field and echo the job id that the oracle predicts for the k-th message
that needs an answer. QoS 1 is at least once: a copy the broker delivers
again (after a reconnect of the agent's client) has the seq of the first and
is dropped, and counted. Messages are published without waiting and answers
are collected in bulk, so 10,000 take seconds, not minutes.

EDGEBENCH_FUZZ_SCALE multiplies the number of examples (default 1: 10,500).
The examples are random on every run; EDGEBENCH_FUZZ_SEED fixes them, and a
failure names the seed it ran with (and every mismatching answer beside the
message it answered), so that a failure seen once in CI can be run again.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from edgebench.agent.outbox import FIELD_MAX
from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.common.text import printable
from edgebench.runner.catalogue import WORKLOADS
from edgebench.schemas import AgentStatus, CancelRequest, Envelope, JobEvent, JobSpec, JobState, topics
from edgebench.schemas.envelope import DecodeError, decode, encode
from tests.conftest import AgentProcess, Mosquitto
from tests.helpers import sleep_job

MAX_PAYLOAD_BYTES = 16 * 1024  # small, so that oversized payloads are cheap to make
SCALE = float(os.environ.get("EDGEBENCH_FUZZ_SCALE", "1"))
SEED = int(os.environ.get("EDGEBENCH_FUZZ_SEED") or int.from_bytes(os.urandom(4), "big"))


def _n(examples: int) -> int:
    return max(1, int(examples * SCALE))


@dataclass
class Expected:
    field: str
    job_id: str
    job_id_may_be_unknown: bool = False  # see oracle()


@dataclass
class FuzzAgent:
    """A running agent, a publisher on its job topic and a listener on its events."""

    agent: AgentProcess
    pub: MqttClient
    sub: MqttClient
    jobs_topic: str
    expected: list[Expected] = field(default_factory=list)
    previews: list[bytes] = field(default_factory=list)  # the start of each message that needs an answer
    sent: int = 0
    slowest_send_s: float = 0.0
    unanswered_by_design: int = 0
    redelivered: int = 0
    disconnects: dict[str, int] = field(default_factory=dict)  # client -> times it lost the broker
    stats: dict[str, tuple[int, float]] = field(default_factory=dict)

    def send(self, payload: bytes) -> None:
        t0 = time.monotonic()
        self.sent += 1
        exp = oracle(payload)
        if exp is None:
            self.unanswered_by_design += 1
        else:
            self.expected.append(exp)
            self.previews.append(payload[:300])
        self.pub.publish(self.jobs_topic, payload)
        self.slowest_send_s = max(self.slowest_send_s, time.monotonic() - t0)

    def check(self, family: str, t0: float, timeout_s: float = 120) -> None:
        """Collect as many answers as expected, compare them in order, reset."""
        answers: list[JobEvent] = []
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(self.expected) and time.monotonic() < deadline:
            try:
                msg = self.sub.messages.get(timeout=0.5)
            except queue.Empty:
                assert self.agent.proc is not None and self.agent.proc.poll() is None, self.agent.log()[-3000:]
                continue
            body = decode(msg.payload, 10**7).body
            if isinstance(body, AgentStatus):
                continue  # presence: the client re-subscribes every topic after a reconnect (a loaded machine)
            assert isinstance(body, JobEvent)
            if body.seq in seen:
                self.redelivered += 1  # at least once: the same answer again (its seq is agent-wide)
                continue
            seen.add(body.seq)
            answers.append(body)
        took_s = time.monotonic() - t0
        agent_disconnects = self.agent.log().count("disconnected from the broker")
        context = (f"EDGEBENCH_FUZZ_SEED={SEED}; {self.redelivered} redelivered; disconnects {self.disconnects},"
                   f" agent {agent_disconnects}")
        assert self.agent.proc is not None and self.agent.proc.poll() is None, "the agent died"
        assert len(answers) == len(self.expected), (
            f"{family} ({context}): {len(answers)} answers to {len(self.expected)} messages "
            "that need one\n"
            + _problems(self.agent.log()))
        wrong = [f"answer {i} of {len(answers)}: {_answer(ev)}\n  expected {exp}\n  to {self.previews[i]!r}"
                 for i, (ev, exp) in enumerate(zip(answers, self.expected)) if not _matches(ev, exp)]
        assert not wrong, (f"{family} ({context}): {len(wrong)} answer(s) not as expected\n"
                           + "\n".join(wrong[:10]) + "\n" + _problems(self.agent.log()))
        time.sleep(0.3)  # nothing more may come: one answer per message
        extra = [m for m in _drain(self.sub.messages) if not _is_copy_or_status(m.payload, seen)]
        assert not extra, f"{family} ({context}): {len(extra)} more answers than messages: {extra[:3]}"
        assert _problems(self.agent.log()) == ""
        self.stats[family] = (self.sent, took_s)
        print(f"\n{family}: {self.sent} messages ({self.unanswered_by_design} valid cancels), "
              f"{len(answers)} REJECTED, {self.sent / took_s:,.0f} messages/s end to end, slowest example "
              f"{self.slowest_send_s * 1000:.0f} ms; {context}", file=sys.stderr)
        self.expected.clear()
        self.previews.clear()
        self.sent = 0
        self.slowest_send_s = 0.0
        self.unanswered_by_design = 0


def _drain(q: queue.Queue[Any]) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def _is_copy_or_status(payload: bytes, seen: set[int]) -> bool:
    body = decode(payload, 10**7).body
    return isinstance(body, AgentStatus) or (isinstance(body, JobEvent) and body.seq in seen)


def _matches(ev: JobEvent, exp: Expected) -> bool:
    return (ev.state == JobState.REJECTED and ev.attempt == 0  # an answer, never an accepted job's stream
            and ev.field == exp.field and bool(ev.reason)
            and (ev.job_id == exp.job_id or (exp.job_id_may_be_unknown and ev.job_id == "-")))


def _answer(ev: JobEvent) -> str:
    return (f"{ev.state.value} attempt {ev.attempt} job {ev.job_id!r} field {ev.field!r} "
            f"reason {(ev.reason or '')[:200]!r}")


def _nesting(payload: bytes) -> int:
    """Deepest [ or { nesting outside JSON strings."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in payload.decode("utf-8", "replace"):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _problems(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "Traceback" in line or "unexpected error" in line)


def oracle(payload: bytes) -> Expected | None:
    """What the agent must answer, from the same parser it uses (see module doc)."""
    try:
        env = decode(payload, MAX_PAYLOAD_BYTES)
    except DecodeError as exc:
        # The job id of an invalid message is guessed with json.loads, which for
        # nesting near Python's recursion limit succeeds or not depending on the
        # caller's stack depth: there, "-" is a fair answer too.
        # The field is the sender's own text: the answer carries it escaped (no control characters).
        return Expected(printable(exc.field or "payload", FIELD_MAX - 20), exc.job_id or "-",
                        _nesting(payload) > 500)
    body = env.body
    if isinstance(body, CancelRequest):
        return None
    if isinstance(body, JobSpec):
        return Expected("backend", body.job_id)
    return Expected("body.kind", "-")  # an event or status names no job sent to this agent


@pytest.fixture(scope="module")
def fuzz_agent(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzAgent]:
    import uuid

    import yaml

    tmp = tmp_path_factory.mktemp("fuzz")
    fleet = f"fz{uuid.uuid4().hex[:10]}"
    device = f"fuzz-{uuid.uuid4().hex[:8]}"
    config = tmp / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "backends": {"sleep": {"executor": "local", "python": "/nonexistent/python3"}},
        "max_payload_bytes": MAX_PAYLOAD_BYTES,
    }))
    agent = AgentProcess(device, mosquitto.url, fleet, tmp / "state", tmp / "data", [], config)
    agent.state_dir.mkdir(parents=True)
    settings_ = BrokerSettings.from_url(mosquitto.url)
    disconnects = {"pub": 0, "sub": 0}

    def counter(name: str) -> Any:
        def changed(connected: bool) -> None:
            disconnects[name] += not connected
        return changed

    # a persistent session: answers published while this client reconnects wait for it
    sub = MqttClient(settings_, f"fuzz-sub-{fleet}", persistent_session_s=600, on_connection_change=counter("sub"))
    sub.connect()
    sub.subscribe([topics.events(fleet, device), topics.status(fleet, device)])
    agent.start()
    _wait_online(sub, agent)
    pub = MqttClient(settings_, f"fuzz-pub-{fleet}", max_inflight=1000, on_connection_change=counter("pub"))
    pub.connect()
    try:
        yield FuzzAgent(agent, pub, sub, topics.jobs(fleet, device), disconnects=disconnects)
    finally:
        pub.close()
        sub.close()
        agent.stop()


def _wait_online(sub: MqttClient, agent: AgentProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = sub.messages.get(timeout=0.5)
        except queue.Empty:
            assert agent.proc is not None and agent.proc.poll() is None, agent.log()
            continue
        body = decode(msg.payload).body
        if isinstance(body, AgentStatus) and body.online:
            sleep = [b for b in body.backends if b.backend == "sleep"]
            assert sleep and not sleep[0].available  # by design: see module doc
            # from now on only events matter: drop the status subscription's traffic
            sub._client.unsubscribe(msg.topic)
            time.sleep(0.2)
            while not sub.messages.empty():
                sub.messages.get_nowait()
            return
    raise AssertionError("fuzz agent not online:\n" + agent.log())


# -- generators -----------------------------------------------------------------------

def _valid_doc(job_id: str = "fz-valid", backend: str = "sleep", workload: str = "fashion-mnist-mlp") -> dict[str, Any]:
    job = sleep_job(job_id)
    doc = json.loads(encode(Envelope.of(sender="controller", body=job)))
    doc["body"]["backend"] = backend
    wl = {k: v for k, v in WORKLOADS[workload].items() if k in doc["body"]["workload"]}
    doc["body"]["workload"].update(wl)
    return doc


json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
               | st.text(max_size=40))
json_values = st.recursive(json_leaves, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=12), children, max_size=5), max_leaves=12)

weird_values = st.one_of(
    json_values,
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([10**308, -1, 0, 2**63, 2**64 + 1, 1e308, -1e-308, 0.5, "NaN", "", " ", "\x00", "..",
                     "../../etc/passwd", "/dev/zero", "$(reboot)", "a/b", "+", "#", "ü" * 50, "\ud7ff",
                     "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "job\n1", "x" * 300, [], {}, [[[]]], True, None]),
    st.text(min_size=0, max_size=80),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


DEEP = "__deep__"  # placeholder, replaced in the JSON text (json.dumps recurses)


def _deepen(text: str, depth: int, as_list: bool) -> str:
    nested = "[" * depth + "1" + "]" * depth if as_list else '{"a":' * depth + "1" + "}" * depth
    return text.replace(f'"{DEEP}"', nested, 1)


@st.composite
def mutated_envelope(draw: st.DrawFn) -> bytes:
    """A valid job envelope with 0-4 mutations: drop, add, retype, deepen."""
    doc = _valid_doc(
        job_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
        backend=draw(st.sampled_from(["sleep", "torch", "keras-jax", "keras-mxnet"])),
        workload=draw(st.sampled_from(sorted(WORKLOADS))),
    )
    deep: tuple[int, bool] | None = None
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(doc)
        op = draw(st.sampled_from(["drop", "add", "retype", "deep", "unicode_key"]))
        path = draw(st.sampled_from(paths)) if paths else ()
        parent = _parent(doc, path) if path else doc
        if op == "drop" and path:
            del parent[path[-1]]
        elif op == "add":
            target = parent if isinstance(parent, dict) else doc
            target[draw(st.text(min_size=1, max_size=20))] = draw(weird_values)
        elif op == "retype" and path:
            parent[path[-1]] = draw(weird_values)
        elif op == "deep" and path and deep is None:
            parent[path[-1]] = DEEP
            deep = (draw(st.integers(10, 3000)), draw(st.booleans()))
        elif op == "unicode_key":
            target = parent if isinstance(parent, dict) else doc
            target[draw(st.text(min_size=200, max_size=700))] = 1
    text = json.dumps(doc, allow_nan=True)
    if deep is not None:
        text = _deepen(text, *deep)
    return text.encode()


@st.composite
def wrong_kind(draw: st.DrawFn) -> bytes:
    """Well-formed envelopes whose body is not a job, or claims the wrong kind."""
    now = datetime.now(timezone.utc)
    choice = draw(st.sampled_from(["event", "status", "cancel", "cancel_bad", "kind_swap"]))
    job_id = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True))
    if choice == "event":
        body: Any = JobEvent(job_id=job_id, device_id="box1", seq=0, state=draw(st.sampled_from(list(JobState))),
                             at=now)
    elif choice == "status":
        body = AgentStatus(device_id="box1", fleet="f", online=True, at=now, agent_version="0")
    elif choice in ("cancel", "cancel_bad"):
        body = CancelRequest(job_id=job_id, reason=draw(st.text(max_size=50)))
    else:
        doc = _valid_doc(job_id)
        doc["body"]["kind"] = draw(st.sampled_from(["cancel", "event", "status", "JOB", "", None, 1]))
        return json.dumps(doc).encode()
    doc = json.loads(encode(Envelope.of(sender="controller", body=body)))
    if choice == "cancel_bad":
        doc["body"][draw(st.sampled_from(["job_id", "reason", "extra"]))] = draw(weird_values)
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def oversized(draw: st.DrawFn) -> bytes:
    """Over max_payload_bytes: valid-looking jobs padded, or plain noise."""
    size = draw(st.integers(MAX_PAYLOAD_BYTES + 1, 4 * MAX_PAYLOAD_BYTES))
    if draw(st.booleans()):
        doc = _valid_doc(draw(st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)))
        doc["body"]["tags"] = ["x" * 60] * (size // 60)
        return json.dumps(doc).encode()
    return bytes([draw(st.integers(0, 255))]) * size


# -- the tests --------------------------------------------------------------------------

def _feed(fuzz_agent: FuzzAgent, strategy: st.SearchStrategy[bytes], examples: int, family: str) -> None:
    t0 = time.monotonic()

    @seed(SEED)  # no deadline, no database: tests/agent/conftest.py's profile
    @settings(max_examples=examples)
    @given(strategy)
    def feed(payload: bytes) -> None:
        fuzz_agent.send(payload)

    feed()
    sent = fuzz_agent.sent
    fuzz_agent.check(family, t0)
    assert sent >= 0.9 * examples, f"{family}: hypothesis generated only {sent} of {examples} (seed {SEED})"


def test_random_bytes_are_rejected(fuzz_agent: FuzzAgent) -> None:
    _feed(fuzz_agent, st.binary(max_size=600), _n(2500), "random bytes")


def test_random_json_is_rejected(fuzz_agent: FuzzAgent) -> None:
    documents = json_values | st.dictionaries(
        st.sampled_from(["schema_version", "msg_id", "sent_at", "sender", "body", "signature", "kind"]),
        json_values, max_size=6)
    _feed(fuzz_agent, documents.map(lambda d: json.dumps(d, allow_nan=True).encode()), _n(2500), "random JSON")


def test_mutated_jobs_are_rejected_naming_the_field(fuzz_agent: FuzzAgent) -> None:
    _feed(fuzz_agent, mutated_envelope(), _n(4000), "mutated envelopes")


def test_wrong_kinds_are_rejected(fuzz_agent: FuzzAgent) -> None:
    _feed(fuzz_agent, wrong_kind(), _n(1300), "wrong kinds")


def test_oversized_payloads_are_rejected(fuzz_agent: FuzzAgent) -> None:
    _feed(fuzz_agent, oversized(), _n(200), "oversized")


def test_rejection_rate_in_bulk(fuzz_agent: FuzzAgent) -> None:
    """How fast the agent answers bad messages when they come all at once
    (generation excluded): publish 3,000 pre-made ones, time the answers."""
    payloads = [os.urandom(1 + i % 300) for i in range(_n(3000))]
    t0 = time.monotonic()
    for p in payloads:
        fuzz_agent.send(p)
    fuzz_agent.check("bulk random bytes", t0)
    n, took_s = fuzz_agent.stats["bulk random bytes"]
    assert n / took_s > 100, f"{n / took_s:.0f} messages/s"


def test_the_agent_still_answers_at_once_afterwards(fuzz_agent: FuzzAgent) -> None:
    """After the storm nothing is stuck in the agent's queue or outbox."""
    t0 = time.monotonic()
    fuzz_agent.send(encode(Envelope.of(sender="controller", body=sleep_job("after-the-storm"))))
    fuzz_agent.check("after the storm", t0, timeout_s=5)



# a user's model (schemas/artifact.py): strings the agent never turns into a path (it derives the
# cache path from the digest alone); each is held to its pattern or format
NOT_PATHS = {
    "JobSpec.$defs.ArtifactLocation.properties.url.anyOf[0]": r"^https?://[!-~]{1,2040}$(?![\s\S])",  # fetched only
    "JobSpec.$defs.ArtifactLocation.properties.token.anyOf[0]": r"^[A-Za-z0-9._~+/=-]{1,4096}$(?![\s\S])",  # a header
    "JobSpec.$defs.ArtifactLocation.properties.expires_at.anyOf[0]": "date-time",
    "JobSpec.$defs.InputSignature.properties.name": r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,199}$(?![\s\S])",  # a tensor
}


def test_no_job_field_can_name_a_path() -> None:
    """A job selects from catalogues; it never carries a free path. Every
    string a job (or a cancel) can hold is an enum/constant, or an identifier
    whose alphabet has no '/' and which cannot start with '.' (so no '..' path
    step, no absolute path: job ids become directory names on the agent)."""
    import re

    from edgebench.schemas.base import IDENTIFIER_PATTERN, SHA256_PATTERN

    pattern = IDENTIFIER_PATTERN + r"(?![\s\S])"  # as exported (schemas/base.py)
    for bad in ("../x", ".x", "a/b", "abc\n"):
        assert not re.search(pattern, bad)

    def strings(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            if node.get("type") == "string":
                yield where, node
            for key, value in node.items():
                yield from strings(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from strings(value, f"{where}[{i}]")

    free = []
    checked = 0
    for model in (JobSpec, CancelRequest):
        for where, node in strings(model.model_json_schema(), model.__name__):
            checked += 1
            if "enum" in node or "const" in node or node.get("pattern") in (pattern, SHA256_PATTERN + r"(?![\s\S])"):
                continue  # a catalogue value, an identifier, or a hex digest
            if where == "CancelRequest.properties.reason":
                continue  # free text, echoed in the CANCELED event, never used as a name
            if where in NOT_PATHS:
                assert node.get("pattern") == NOT_PATHS[where] or node.get("format") == NOT_PATHS[where], where
                continue
            free.append(where)
    assert checked >= 12  # job_id, sweep_id, tags, backend, model, dataset, ...
    assert free == [], f"string fields a job could use to name a path: {free}"
