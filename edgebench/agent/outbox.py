"""Events out: how the agent builds its events and publishes them durably.

``Events`` turns a state change into the payload builder that the store calls
inside its transaction (the sequence number is only known there).
``OutboxPublisher`` is the thread that publishes stored events in order and
deletes each only when the broker acknowledged it (PUBACK).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any

from edgebench.agent.eventsize import encode_event
from edgebench.agent.store import AgentStore, PayloadBuilder
from edgebench.common.mqtt import MqttClient
from edgebench.schemas import JobEvent, JobState

log = logging.getLogger(__name__)

REASON_MAX = 4000  # JobEvent.reason's max_length
FIELD_MAX = 500


class Events:
    """Builds this agent's events (``device_id`` is the sender of each)."""

    def __init__(self, device_id: str, max_event_bytes: int):
        self.device_id = device_id
        self.max_event_bytes = max_event_bytes

    def builder(self, job_id: str, attempt: int, state: JobState, sweep_id: str | None = None,
                **fields: Any) -> PayloadBuilder:
        def build(seq: int) -> bytes:
            event = JobEvent.model_validate({
                "job_id": job_id, "device_id": self.device_id, "attempt": attempt, "seq": seq, "state": state,
                "at": datetime.now(timezone.utc), "sweep_id": sweep_id, **fields,
            }, strict=False)
            return encode_event(event, self.device_id, self.max_event_bytes)

        return build


class OutboxPublisher:
    """Publishes the store's outbox: woken by every enqueue, acknowledgement and
    (re)connection; at most ``window`` events in flight.

    An event in flight is paho's to deliver, across reconnects too. Only one
    that has had no PUBACK for ``resend_after_s`` of connected time is
    published again (a safety net: at least once, never stuck)."""

    def __init__(self, store: AgentStore, client: MqttClient, stop: threading.Event, window: int = 100,
                 resend_after_s: float = 300.0):
        self.store = store
        self.client = client
        self.stop = stop
        self.window = window
        self.resend_after_s = resend_after_s
        self.wake = threading.Event()
        self._acks: queue.Queue[int] = queue.Queue()
        self._connected_at = time.monotonic()
        self._sent_at: dict[int, float] = {}  # paho mid -> when it was published (outbox thread only)
        self.thread = threading.Thread(target=self._run, name="agent-outbox", daemon=True)

    # paho thread: hand over, never touch SQLite here
    def on_ack(self, mid: int) -> None:
        self._acks.put(mid)
        self.wake.set()

    def on_connection_change(self, connected: bool) -> None:
        if connected:
            self._connected_at = time.monotonic()
        self.wake.set()

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        self.wake.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        inflight: dict[int, int] = {}  # paho mid -> outbox row id
        while True:
            # the timeout is only a safety net
            self.wake.wait(5.0)
            self.wake.clear()
            try:
                if not self._step(inflight):
                    return
            except Exception:  # noqa: BLE001 - the publisher must outlive any one bad row or store hiccup
                log.exception("outbox publisher: unexpected error; retrying")
                self.stop.wait(1.0)

    def _step(self, inflight: dict[int, int]) -> bool:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row_id = inflight.pop(mid, None)
            self._sent_at.pop(mid, None)
            if row_id is not None:
                self.store.acknowledge(row_id)
        if not self.client.connected:
            # What is in flight stays in flight: paho keeps every unacknowledged QoS 1 message and
            # sends it again after the reconnect under the same mid, whose PUBACK then acknowledges
            # the row. Publishing those rows again here sent each of them twice (tests/agent/test_outbox.py).
            return not self.stop.is_set()
        now = time.monotonic()
        for mid in [m for m, t in self._sent_at.items() if now - max(t, self._connected_at) > self.resend_after_s]:
            log.warning("outbox: no PUBACK for message %d (outbox row %d) in %.0f s of connection; publishing it "
                        "again", mid, inflight.get(mid, -1), self.resend_after_s)
            inflight.pop(mid, None)
            del self._sent_at[mid]
        if len(inflight) < self.window:
            for row in self.store.pending(limit=self.window, exclude=set(inflight.values())):
                mid = self.client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                inflight[mid] = row.id
                self._sent_at[mid] = now
        return not (self.stop.is_set() and not inflight and not self.store.outbox_size())
