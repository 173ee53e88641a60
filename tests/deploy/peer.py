"""A small synchronous MQTT test client over paho 2.x, for the broker security tests.

Waits are on events set by paho's callbacks (CONNACK, SUBACK, PUBACK, message
arrival), never bare sleeps; the only fixed wait is the quiet period after a
sentinel, which proves that a forbidden message did not arrive.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

QUIET_S = 0.5  # after the sentinel arrived: long enough for anything sent before it


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Credentials:
    """How a peer proves who it is: a bundle directory made by edgebench.common.pki
    (ca.crt, client.crt, client.key), a password, both or neither."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None


class Peer:
    def __init__(self, host: str, port: int, creds: Credentials, client_id: str = "",
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                 will: tuple[str, bytes, bool] | None = None):
        self.host, self.port = host, port
        self.received: list[Received] = []
        self._queue: queue.Queue[Received] = queue.Queue()
        self._connack: ReasonCode | None = None
        self._answered = threading.Event()  # CONNACK or connection loss, whichever first
        self._disconnected = threading.Event()
        self._acks: dict[int, list[Any]] = {}
        self._acked = threading.Condition()
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id, protocol=protocol, reconnect_on_failure=False)
        if creds.ca_file is not None:
            self._client.tls_set(ca_certs=str(creds.ca_file),
                                 certfile=str(creds.cert_file) if creds.cert_file else None,
                                 keyfile=str(creds.key_file) if creds.key_file else None)
        if creds.username is not None:
            self._client.username_pw_set(creds.username, creds.password)
        if will is not None:
            topic, payload, retain = will
            self._client.will_set(topic, payload, qos=1, retain=retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    # -- paho callbacks (network thread): hand results over, never block --------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Any = None) -> None:
        self._connack = rc
        self._answered.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self._disconnected.set()
        self._answered.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode],
                      props: Any = None) -> None:
        with self._acked:
            self._acks[mid] = list(rcs)
            self._acked.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any = None) -> None:
        with self._acked:
            self._acks[mid] = [rc]
            self._acked.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    # -- test-side API -------------------------------------------------------------------

    def connect(self, timeout_s: float = 5.0) -> str | None:
        """Connect and wait for the broker's answer. Returns None when accepted,
        else why not (a refused CONNACK, a TLS failure, a dropped connection)."""
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except (ssl.SSLError, OSError) as exc:  # the handshake failed on our side
            return f"{type(exc).__name__}: {exc}"
        self._client.loop_start()
        if not self._answered.wait(timeout_s):
            self.close()
            return "no answer"
        if self._connack is None or self._connack.is_failure:
            self.close()
            # With TLS 1.3 the client finishes its handshake before the server has
            # checked the client certificate: that refusal arrives as a dropped link.
            return str(self._connack) if self._connack is not None else "connection dropped"
        return None

    def connected(self) -> bool:
        return self._connack is not None and not self._connack.is_failure and not self._disconnected.is_set()

    def _wait_ack(self, mid: int, timeout_s: float) -> list[Any]:
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, timeout_s):
                raise TimeoutError(f"no acknowledgement for message {mid} within {timeout_s} s")
            return self._acks.pop(mid)

    def subscribe(self, *topics: str, qos: int = 1, timeout_s: float = 5.0) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK; returns one reason code per topic."""
        result, mid = self._client.subscribe([(t, qos) for t in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        assert mid is not None
        return self._wait_ack(mid, timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                timeout_s: float = 5.0, wait: bool = True) -> None:
        """Publish and, for QoS 1 and ``wait``, wait for the PUBACK (which
        Mosquitto sends even when it drops the message for lack of rights)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0 and wait:
            self._wait_ack(info.mid, timeout_s)

    def wait_disconnected(self, timeout_s: float = 5.0) -> bool:
        return self._disconnected.wait(timeout_s)

    def expect(self, topic: str, payload: bytes, timeout_s: float = 5.0) -> Received:
        """Wait for one message; everything received meanwhile is kept in ``received``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{topic} {payload!r} not received; got {self.received}")
            try:
                msg = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.received.append(msg)
            if msg.topic == topic and msg.payload == payload:
                return msg

    def settle(self, quiet_s: float = QUIET_S) -> list[Received]:
        """Collect whatever else arrives within ``quiet_s``; returns everything received."""
        deadline = time.monotonic() + quiet_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.received.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return self.received

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, as a crashed agent or a cut
        cable would: the broker then publishes the last will."""
        self._client.loop_stop()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
