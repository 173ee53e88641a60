"""One small, typed wrapper over paho-mqtt 2.x, used by agent and controller.

paho's threading rules are respected: its callbacks run on paho's network
thread and only hand results over (to a queue, an Event or a user hook that
must not block). Nobody publishes-and-waits inside a callback.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgebench.common.errors import EdgebenchError, UsageError
from edgebench.schemas import SCHEMA_VERSION

log = logging.getLogger(__name__)


class MqttError(EdgebenchError):
    """Base class for transport errors."""


class ConnectError(MqttError):
    """The broker could not be reached or refused the connection."""


class BrokerUrlError(UsageError, ValueError):
    """A broker URL that cannot be used (scheme, protocol)."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect. Parsed from a URL such as
    ``mqtt://user:pass@host:1883`` or ``mqtts://host:8883?protocol=311``."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    protocol: Literal[5, 311] = 5
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> BrokerSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise BrokerUrlError(f"broker URL must start with mqtt:// or mqtts://, got {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        protocol = int(query.get("protocol", "5"))
        if protocol not in (5, 311):
            raise BrokerUrlError("protocol must be 5 or 311")
        values: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or (8883 if tls else 1883),
            "tls": tls,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "protocol": protocol,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        suffix = "" if self.protocol == 5 else "?protocol=311"
        return f"{scheme}://{self.host}:{self.port}{suffix}"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    mid: int = 0  # the broker's packet id, for ack() with manual_ack
    qos: int = 0


@dataclass
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass
class _Subscriptions:
    topics: dict[str, int] = field(default_factory=dict)


class MqttClient:
    """A paho client with a message queue, auto-reconnect and re-subscription.

    Parameters
    ----------
    persistent_session_s:
        If set, the broker keeps the session (subscriptions and queued QoS 1
        messages) this long while the client is away (MQTT 5 session expiry;
        clean_session=False on 3.1.1), so jobs sent to an offline agent wait.
    manual_ack:
        Acknowledge QoS 1 messages only when ack() is called (paho's default is
        on receipt, before the application has stored anything).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        will: Will | None = None,
        persistent_session_s: int | None = None,
        on_publish_ack: Callable[[int], None] | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        max_inflight: int = 200,
        manual_ack: bool = False,
    ):
        self.settings = settings
        self.client_id = client_id
        self.messages: queue.Queue[Message] = queue.Queue()
        self._subs = _Subscriptions()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._on_publish_ack = on_publish_ack
        self._on_connection_change = on_connection_change
        self._persistent_s = persistent_session_s
        self._connect_error: str | None = None
        self._suback = threading.Condition()
        self._subacked: set[int] = set()
        v5 = settings.protocol == 5
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else persistent_session_s is None,
            manual_ack=manual_ack,
        )
        self._manual_ack = manual_ack
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)  # unbounded: the agent's outbox bounds it
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self._client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_socket_open = self._handle_socket_open

    # -- paho callbacks: network thread, never block ---------------------------------
    @staticmethod
    def _handle_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # MQTT is small request/response packets: with Nagle's algorithm a
        # PUBLISH written right after a PUBACK waits for the broker's delayed
        # TCP ACK (40 ms on Linux). That doubled a job's dispatch latency.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not a TCP socket (e.g. a websocket wrapper)

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                        properties: Any) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
            log.warning("broker refused connection: %s", reason_code)
            return
        self._connect_error = None
        with self._lock:
            topics = list(self._subs.topics.items())
        if topics:
            # Re-subscribe even with a present session: cheap, and covers brokers
            # that lost the session (restart without persistence).
            client.subscribe(topics)
        self._connected.set()
        if self._on_connection_change:
            self._on_connection_change(True)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                           properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._on_connection_change:
            self._on_connection_change(False)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Message(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.mid), int(msg.qos)))

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                        properties: Any) -> None:
        if self._on_publish_ack:
            self._on_publish_ack(mid)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                          properties: Any) -> None:
        with self._suback:
            self._subacked.add(mid)
            self._suback.notify_all()

    # -- API ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        props = None
        if self.settings.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._persistent_s or 0
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=self._persistent_s is None if self.settings.protocol == 5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._client.loop_start()

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK; raise ConnectError on failure."""
        self.start()
        if not self.wait_connected(timeout_s):
            self.close()
            detail = self._connect_error or "no answer"
            raise ConnectError(f"could not connect to {self.settings.url} within {timeout_s:.0f} s: {detail}")

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def subscribe(self, topics: list[str], qos: int = 1, timeout_s: float = 5.0) -> None:
        """Subscribe now (if connected) and after every reconnect; waits for SUBACK."""
        with self._lock:
            for t in topics:
                self._subs.topics[t] = qos
        if not self.connected:
            return
        result, mid = self._client.subscribe([(t, qos) for t in topics])
        if result != mqtt.MQTT_ERR_SUCCESS:
            return  # resubscribed on the next connect
        with self._suback:
            self._suback.wait_for(lambda: mid in self._subacked, timeout_s)
            self._subacked.discard(mid)

    def ack(self, msg: Message) -> None:
        """With ``manual_ack``, acknowledge a QoS 1 message once it is safely
        handled (stored): a consumer that dies before has it redelivered when
        its persistent session resumes. Acknowledge in the order received."""
        if self._manual_ack and msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                expiry_s: int | None = None) -> int:
        """Queue a publish; returns the message id (acknowledged via on_publish_ack)."""
        props = None
        if self.settings.protocol == 5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("schema", SCHEMA_VERSION)
            props.ContentType = "application/json"
            if expiry_s:
                props.MessageExpiryInterval = int(expiry_s)
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return int(info.mid)

    def publish_and_wait(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                         timeout_s: float = 5.0, expiry_s: int | None = None) -> bool:
        props = None
        if self.settings.protocol == 5 and expiry_s:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = int(expiry_s)
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def close(self, end_session: bool = False) -> None:
        """Disconnect cleanly (no last will) and stop the network thread.

        ``end_session`` ends a persistent session now instead of at its expiry
        (MQTT 5: session expiry 0 in the DISCONNECT): for clients that want
        their session only to ride out broker restarts while they run.
        """
        props = None
        if end_session and self._persistent_s and self.settings.protocol == 5:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        try:
            self._client.disconnect(properties=props)
        finally:
            self._client.loop_stop()
