"""The paho wrapper against real brokers (Mosquitto, and the embedded amqtt)."""

from __future__ import annotations

import pytest

from edgebench.common.broker import EmbeddedBroker
from edgebench.common.mqtt import BrokerSettings, ConnectError, MqttClient


def test_url_parsing() -> None:
    s = BrokerSettings.from_url("mqtts://dev%2F1:p%40ss@broker.plant:8884?protocol=311")
    assert (s.host, s.port, s.tls) == ("broker.plant", 8884, True)
    assert (s.username, s.password, s.protocol) == ("dev/1", "p@ss", 311)
    assert BrokerSettings.from_url("mqtt://h").port == 1883
    with pytest.raises(ValueError):
        BrokerSettings.from_url("http://h")


def test_connect_error_is_clear() -> None:
    from tests.conftest import free_port

    c = MqttClient(BrokerSettings.from_url(f"mqtt://127.0.0.1:{free_port()}"), "x")
    with pytest.raises(ConnectError, match="could not connect"):
        c.connect(timeout_s=1.5)


@pytest.mark.parametrize("which", ["mosquitto", "embedded"])
def test_publish_subscribe_retained(which, mosquitto, fleet) -> None:
    broker = None
    if which == "embedded":
        broker = EmbeddedBroker().start()
        url = broker.url
    else:
        url = mosquitto.url
    try:
        pub = MqttClient(BrokerSettings.from_url(url), f"pub-{fleet}")
        pub.connect()
        assert pub.publish_and_wait(f"{fleet}/status", b"online", retain=True)
        sub = MqttClient(BrokerSettings.from_url(url), f"sub-{fleet}")
        sub.connect()
        sub.subscribe([f"{fleet}/#"])
        msg = sub.messages.get(timeout=5)
        assert (msg.topic, msg.payload, msg.retain) == (f"{fleet}/status", b"online", True)
        pub.publish(f"{fleet}/x", b"1")
        assert sub.messages.get(timeout=5).payload == b"1"
        pub.close()
        sub.close()
    finally:
        if broker:
            broker.stop()
