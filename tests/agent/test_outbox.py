"""The outbox publisher over a real broker, through a TCP link the test can cut.

paho keeps every unacknowledged QoS 1 message and sends it again after a
reconnect (client._messages_reconnect_reset_out), so the outbox must not
publish those rows a second time: each event reaches the broker once when the
link dropped before the broker saw it, and nothing is lost either way.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgebench.agent.outbox import OutboxPublisher
from edgebench.agent.store import AgentStore
from edgebench.common.broker import free_port
from edgebench.common.mqtt import BrokerSettings, MqttClient
from tests.conftest import Mosquitto

TOPIC = "eb/test/outbox"


class Link:
    """A TCP relay to the broker. ``hold()`` stops forwarding (bytes wait in the
    kernel, neither side sees an error); ``cut()`` closes every connection, so
    what was held never arrives. New connections are relayed as before."""

    def __init__(self, broker_port: int):
        self.port = free_port()
        self.broker_port = broker_port
        self.held = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            with self._lock:
                self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                while self.held.is_set():
                    time.sleep(0.01)
                data = src.recv(65536)
                if not data or self.held.is_set():
                    break  # closed, or held while this chunk was read: it is dropped with the link
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def hold(self) -> None:
        self.held.set()

    def cut(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.held.clear()

    def close(self) -> None:
        self._server.close()
        self.cut()


@pytest.fixture()
def link(private_mosquitto: Mosquitto) -> Iterator[Link]:
    relay = Link(private_mosquitto.port)
    yield relay
    relay.close()


def _enqueue(store: AgentStore, n: int, start: int) -> None:
    def payload(i: int) -> Callable[[int], bytes]:
        return lambda seq: f"event-{i}".encode()

    for i in range(start, start + n):
        store.answer(TOPIC, payload(i))


def _received(sub: MqttClient, want: int, timeout_s: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(got) < want:
        try:
            got.append(sub.messages.get(timeout=0.2).payload)
        except queue.Empty:
            pass
    time.sleep(0.5)  # and nothing more
    while not sub.messages.empty():
        got.append(sub.messages.get_nowait().payload)
    return got


def test_a_reconnect_sends_each_unacknowledged_event_once(private_mosquitto: Mosquitto, link: Link,
                                                           tmp_path: Path) -> None:
    sub = MqttClient(BrokerSettings.from_url(private_mosquitto.url), "outbox-sub", persistent_session_s=600)
    sub.connect()
    sub.subscribe([TOPIC])

    store = AgentStore(tmp_path / "agent.db")
    stop = threading.Event()
    holder: dict[str, OutboxPublisher] = {}
    client = MqttClient(BrokerSettings.from_url(f"mqtt://127.0.0.1:{link.port}"), "outbox-agent",
                        persistent_session_s=600,
                        on_publish_ack=lambda mid: holder["p"].on_ack(mid),
                        on_connection_change=lambda up: holder["p"].on_connection_change(up))
    publisher = holder["p"] = OutboxPublisher(store, client, stop, window=100)
    store.on_enqueue = publisher.wake.set
    client.connect()
    publisher.start()
    try:
        _enqueue(store, 20, 0)
        assert len(_received(sub, 20, 10)) == 20  # a healthy link: each once

        link.hold()  # the next events leave the agent but never reach the broker
        _enqueue(store, 30, 20)
        time.sleep(0.5)
        assert store.outbox_size() == 30  # none acknowledged
        link.cut()  # paho reconnects through the link and sends its unacknowledged messages again
        got = _received(sub, 30, 20)
        assert store.outbox_size() == 0
        counts = {p: got.count(p) for p in set(got)}
        assert sorted(counts) == sorted(f"event-{i}".encode() for i in range(20, 50)), "an event was lost"
        dup = {p.decode(): c for p, c in counts.items() if c > 1}
        assert not dup, f"sent again after the reconnect by paho and by the outbox: {dup}"
        assert got == sorted(got, key=lambda p: int(p.split(b"-")[1])), "out of order"
    finally:
        stop.set()
        publisher.join(5)
        client.close()
        sub.close()


class _SilentBroker:
    """A client that is connected and never acknowledges anything (a lost PUBACK, or a message
    paho no longer holds): the case the publisher's safety net is for."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.sent.append(payload)
        return len(self.sent)


def test_an_event_without_puback_is_published_again_after_the_resend_time(tmp_path: Path) -> None:
    from typing import cast

    store = AgentStore(tmp_path / "agent.db")
    client = _SilentBroker()
    publisher = OutboxPublisher(store, cast(MqttClient, client), threading.Event(), resend_after_s=0.3)
    _enqueue(store, 3, 0)
    inflight: dict[int, int] = {}
    publisher._step(inflight)
    publisher._step(inflight)
    assert client.sent == [b"event-0", b"event-1", b"event-2"]  # in flight: not again at once
    publisher.on_connection_change(True)  # a reconnect restarts the clock: paho sends them again itself
    time.sleep(0.2)
    publisher._step(inflight)
    assert len(client.sent) == 3
    time.sleep(0.25)
    publisher._step(inflight)
    assert client.sent[3:] == [b"event-0", b"event-1", b"event-2"]  # at least once, in order
    publisher.on_ack(4)
    publisher.on_ack(5)
    publisher.on_ack(6)
    publisher._step(inflight)
    assert store.outbox_size() == 0
