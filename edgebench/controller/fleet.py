"""The controller's connection to the fleet: presence, dispatch and ingestion.

A FleetClient without a store (``store=None``) only follows presence and
events in memory: `controller devices` and `cancel` open no database. With a
store it is the ingestion path (the collector, `dispatch --wait`): every
event goes through the store's state machine, and whatever cannot be parsed,
arrives on the wrong topic or cannot be stored is kept aside as a dead letter,
then acknowledged: a bad message is never redelivered into a crash loop.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edgebench.common.mqtt import BrokerSettings, Message, MqttClient
from edgebench.common.text import printable
from edgebench.controller.config import ControllerConfig
from edgebench.controller.errors import ControllerError
from edgebench.controller.ingest import Inbound
from edgebench.controller.store import ResultStore
from edgebench.schemas import (
    TERMINAL_STATES,
    AgentStatus,
    CancelRequest,
    Envelope,
    JobEvent,
    JobSpec,
    JobState,
    ReplayRequest,
    topics,
)
from edgebench.schemas.envelope import DecodeError, decode, encode

log = logging.getLogger(__name__)


class TargetError(ControllerError, ValueError):
    """The dispatch targets resolve to no device, or name unknown ones."""


class StoreUnavailable(RuntimeError):
    """The store failed as a whole (down, locked, full): the batch waits, unacknowledged, for the next try."""


class DispatchError(ControllerError, TimeoutError):
    """The broker did not acknowledge a job in time."""


@dataclass(frozen=True)
class Dispatched:
    device_id: str
    job: JobSpec


class FleetClient:
    """Connects to the broker, keeps the store up to date, dispatches jobs.

    ``collector=True`` uses a fixed client id with a persistent session, so
    events published while the collector was away are delivered when it returns.

    Other clients keep a short session that they end when they close: it rides
    out a broker restart (with persistence) or a dropped connection while they
    wait, so no event published meanwhile is lost.

    ``shared_group`` subscribes to events through an MQTT shared subscription
    (``$share/<group>/...``): the broker hands each event to one collector of
    the group, so several collectors split the load. Each needs its own
    ``instance`` name (its session); statuses still go to every collector.
    """

    SESSION_S = 600  # a waiting CLI's session, should the CLI vanish without closing it

    def __init__(self, cfg: ControllerConfig, store: ResultStore | None = None, collector: bool = False,
                 shared_group: str | None = None, instance: str | None = None):
        self.cfg = cfg
        self.store = store
        self.statuses: dict[str, AgentStatus] = {}
        # Jobs this client sent to a device it had not seen online. A broker keeps messages only for a
        # client with a persistent session, so jobs sent to an agent that has never connected (one still
        # starting) are gone. When the device announces itself, its agent is asked about the ones it has not
        # taken (a replay request): it answers "never received" and ingestion sends them again.
        self._unannounced: dict[str, set[str]] = {}
        if shared_group is not None and (not shared_group or any(c in shared_group for c in "/+#")):
            raise ValueError(f"a shared subscription group is a non-empty name without / + #: {shared_group!r}")
        self.shared_group = shared_group
        if collector:
            client_id = f"controller-collector-{cfg.fleet}"
            if shared_group:
                client_id += f"-{shared_group}-{instance or _hostname()}"
        else:
            client_id = f"controller-{uuid.uuid4().hex[:12]}"
        settings = BrokerSettings.from_url(cfg.broker_url, username=cfg.username, password=cfg.password,
                                           ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file)
        self.collector = collector
        if collector:
            session_s: int | None = 7 * 24 * 3600
        else:
            # MQTT 3.1.1 cannot end a session on close nor let it expire: there a
            # short-lived client keeps a clean session (and may miss events
            # across a broker restart; collectors do not)
            session_s = self.SESSION_S if settings.protocol == 5 else None
        self.client = MqttClient(settings, client_id, manual_ack=True, persistent_session_s=session_s)
        self._pending: list[Message] = []
        self._signer = None
        if cfg.signing_key is not None:
            from edgebench.common.signing import load_private_key

            self._signer = load_private_key(cfg.signing_key)

    def __enter__(self) -> FleetClient:
        self.client.connect()
        events = topics.all_events(self.cfg.fleet)
        if self.shared_group:
            events = f"$share/{self.shared_group}/{events}"
        self.client.subscribe([topics.all_status(self.cfg.fleet), events])
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close(end_session=not self.collector)

    # -- inbound ----------------------------------------------------------------------
    def pump(self, timeout_s: float = 0.1, on_event: Callable[[JobEvent, bool], None] | None = None,
             max_messages: int = 10_000) -> int:
        """Handle waiting messages (waiting at most timeout_s for the first).

        Events are stored in batches, one transaction each, and acknowledged to
        the broker only once stored: a collector killed mid-batch gets them
        again from its persistent session.
        """
        handled = 0
        wait = timeout_s
        while handled < max_messages:
            batch = self._take(wait, min(self.BATCH, max_messages - handled))
            if not batch:
                break
            wait = 0
            handled += len(batch)
            self._handle(batch, on_event)
        return handled

    BATCH = 500  # events per transaction

    def _take(self, wait_s: float, limit: int) -> list[Message]:
        if self._pending:  # a batch the store could not take last time comes first
            batch, self._pending = self._pending[:limit], self._pending[limit:]
            return batch
        try:
            batch = [self.client.messages.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.append(self.client.messages.get_nowait())
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[Message], on_event: Callable[[JobEvent, bool], None] | None) -> None:
        inbound: list[Inbound] = []
        announced: list[str] = []
        for msg in batch:
            try:
                body = decode(msg.payload, 16 * 1024 * 1024).body
            except DecodeError as exc:
                self._aside(msg, f"not a valid message: {exc.reason}")
                continue
            if isinstance(body, AgentStatus):
                if msg.topic != topics.status(self.cfg.fleet, body.device_id):
                    self._aside(msg, f"a status of {body.device_id} on another device's topic")
                    continue
                self.statuses[body.device_id] = body
                if body.online and body.device_id in self._unannounced:
                    announced.append(body.device_id)
                if self.store is not None:
                    self.store.upsert_device(body)
            elif isinstance(body, JobEvent):
                if msg.topic != topics.events(self.cfg.fleet, body.device_id):
                    self._aside(msg, f"an event of {body.device_id} on another device's topic")
                    continue
                inbound.append(Inbound(body, msg.topic, msg.payload))
            else:
                self._aside(msg, f"a {body.kind!r} message on a devices' topic")
        try:
            news = self.store.ingest(inbound) if self.store is not None and inbound else [True] * len(inbound)
        except Exception as exc:
            # not the messages' fault (ingest keeps a bad event aside itself): keep them, unacknowledged
            self._pending = batch + self._pending
            raise StoreUnavailable(f"the store could not take {len(inbound)} event(s): {type(exc).__name__}: "
                                   f"{printable(exc, 500)}") from exc
        for msg in batch:  # stored (or kept aside): the broker may forget them
            self.client.ack(msg)
        redispatched: set[tuple[str, str]] = set()
        if self.store is not None:
            for again in self.store.take_redispatches():
                self._send_job(again.device_id, again.job)
                redispatched.add((again.job.job_id, again.device_id))
        for device_id in announced:
            self._ask_about_untaken(device_id, self._unannounced.pop(device_id, set()))
        if on_event:
            for item, new in zip(inbound, news):
                ev = item.event
                if ev.attempt == 0 and (ev.job_id, ev.device_id) in redispatched:
                    continue  # "never received", answered by sending the job again: the job is not over
                on_event(ev, new)

    def _ask_about_untaken(self, device_id: str, job_ids: set[str]) -> None:
        """A replay request for those of ``job_ids`` the device has sent nothing about (still DISPATCHED)."""
        if self.store is None or not job_ids:
            return
        states = self.store.job_states({(j, device_id) for j in job_ids})
        untaken = sorted(j for (j, _), state in states.items() if state == JobState.DISPATCHED.value)
        if untaken:
            log.info("%s announced itself with %d job(s) it has not acknowledged: asking it about them",
                     device_id, len(untaken))
            self.replay(device_id, untaken)

    def _aside(self, msg: Message, reason: str) -> None:
        if self.store is None:
            log.warning("ignoring a message on %s: %s", printable(msg.topic, 300), printable(reason, 500))
            return
        self.store.dead_letter(msg.topic, msg.payload, reason)

    def discover(self, wait_s: float = 1.0) -> dict[str, AgentStatus]:
        """Collect retained statuses for wait_s (they arrive right after subscribing)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))
        return dict(self.statuses)

    # -- targeting ----------------------------------------------------------------------
    def resolve_targets(self, device_ids: Iterable[str] = (), tags: Iterable[str] = (),
                        all_online: bool = False, wait_s: float = 1.0) -> list[str]:
        statuses = self.discover(wait_s)
        chosen: list[str] = []
        for d in device_ids:
            if d not in chosen:
                chosen.append(d)  # may be offline: the job waits in its persistent session
        tags = list(tags)
        for s in sorted(statuses.values(), key=lambda s: s.device_id):
            if not s.online or s.device_id in chosen:
                continue
            if all_online or (tags and set(tags) & set(s.tags)):
                chosen.append(s.device_id)
        if not chosen:
            known = ", ".join(f"{s.device_id}({'online' if s.online else 'offline'})"
                              for s in statuses.values()) or "none"
            raise TargetError(f"no target device (known devices: {known}); use --device, --tag or --all")
        return chosen

    # -- outbound -----------------------------------------------------------------------
    def _wrap(self, body: JobSpec | CancelRequest | ReplayRequest) -> Envelope:
        return Envelope.of(sender="controller", body=body)

    def _sign(self, env: Envelope) -> bytes:
        if self._signer is not None:
            from edgebench.common.signing import sign_envelope

            env = sign_envelope(env, self._signer)
        return encode(env)

    def dispatch(self, plan: list[Dispatched]) -> None:
        for item in plan:
            self._send_job(item.device_id, item.job)

    def _send_job(self, device_id: str, job: JobSpec) -> None:
        if self.store is None:
            raise ValueError("dispatching needs a store (the job is recorded before it is sent)")
        env = self._wrap(job)
        self.store.record_dispatch(device_id, job, env.msg_id)
        ok = self.client.publish_and_wait(topics.jobs(self.cfg.fleet, device_id), self._sign(env),
                                          expiry_s=self.cfg.job_expiry_s)
        if not ok:
            raise DispatchError(f"the broker did not acknowledge job {job.job_id}")
        status = self.statuses.get(device_id)
        if status is None or not status.online:
            self._unannounced.setdefault(device_id, set()).add(job.job_id)

    def cancel(self, job_id: str, device_ids: Iterable[str], reason: str = "canceled by controller") -> None:
        for device_id in device_ids:
            env = self._wrap(CancelRequest(job_id=job_id, reason=reason))
            if self.store is not None:
                self.store.record_sent(env.msg_id, [job_id], device_id, "cancel")
            self.client.publish_and_wait(topics.jobs(self.cfg.fleet, device_id), self._sign(env))

    def replay(self, device_id: str, job_ids: list[str]) -> None:
        """Ask a device to publish again what it kept of these jobs (reconciliation)."""
        for i in range(0, len(job_ids), 100):  # ReplayRequest.job_ids holds at most 100
            chunk = job_ids[i:i + 100]
            env = self._wrap(ReplayRequest(job_ids=chunk))
            if self.store is not None:
                self.store.record_sent(env.msg_id, chunk, device_id, "replay")
            self.client.publish_and_wait(topics.jobs(self.cfg.fleet, device_id), self._sign(env))

    def wait(self, keys: set[tuple[str, str]], timeout_s: float,
             on_event: Callable[[JobEvent, bool], None] | None = None) -> set[tuple[str, str]]:
        """Pump until every (job_id, device_id) in keys is terminal; return those still open."""
        deadline = time.monotonic() + timeout_s
        open_keys = set(keys)
        assert self.store is not None, "waiting for results needs a store"
        store = self.store
        terminal = {s.value for s in TERMINAL_STATES}

        def handle(ev: JobEvent, new: bool) -> None:
            key = (ev.job_id, ev.device_id)
            # the job is over when the store says so: a terminal event can also be an answer the store
            # turned into a new dispatch ("never received"), or one it kept aside
            if ev.state in TERMINAL_STATES and key in open_keys and store.job_states({key}).get(key, "") in terminal:
                open_keys.discard(key)
            if on_event:
                on_event(ev, new)

        # events may have been ingested by another collector already
        for key, state in store.job_states(open_keys).items():
            if state in terminal:
                open_keys.discard(key)
        while open_keys and time.monotonic() < deadline:
            self.pump(0.2, handle)
        return open_keys


def _hostname() -> str:
    import socket

    return socket.gethostname()
