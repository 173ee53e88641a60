"""deploy/mosquitto against a real Mosquitto: authentication, ACL confinement,
presence with a last will, and the limits.

Mosquitto drops an unauthorised publish silently (a QoS 1 publisher still gets
its PUBACK), so confinement is proven by absence: after the forbidden publish
the same client publishes an allowed sentinel; once the sentinel has arrived,
anything sent before it would have arrived too, and a short quiet period
covers the rest.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest

from edgebench.common import pki
from edgebench.schemas import topics
from tests.deploy.conftest import CONFIG_DIR, Broker, start_broker, stop_broker
from tests.deploy.peer import Credentials, Peer


@pytest.fixture()
def fleet() -> str:
    """A fleet name per test: topics never overlap between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


def _fleet_topics(received: list, fleet: str) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in received if m.topic.startswith(f"edgebench/v1/{fleet}/")]


# -- the configuration file itself ---------------------------------------------------------


def test_config_exposes_no_plaintext_or_anonymous_access() -> None:
    conf = (CONFIG_DIR / "mosquitto.conf").read_text()
    directives = [ln.split(None, 1) for ln in conf.splitlines() if ln.strip() and not ln.startswith("#")]
    settings = {d[0]: d[1] if len(d) > 1 else "" for d in directives if d[0] != "listener"}
    assert settings["allow_anonymous"] == "false"
    assert settings["per_listener_settings"] == "false"
    assert settings["persistence"] == "true"
    # Every listener either carries TLS or binds to loopback.
    blocks = re.split(r"^listener ", conf, flags=re.MULTILINE)[1:]
    assert len(blocks) == 4
    for block in blocks:
        head = block.splitlines()[0].split()
        assert "certfile" in block or head[1:] == ["127.0.0.1"], f"listener {head} is plaintext on the network"


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["tls-no-credentials", "tls-unknown-user", "tls-wrong-password",
                                  "local-anonymous", "cert-listener-without-certificate"])
def test_unauthenticated_clients_are_refused(secure_broker: Broker, case: str) -> None:
    ca = secure_broker.layout.ca_cert
    port, creds = {
        "tls-no-credentials": ("device_password", Credentials(ca)),
        "tls-unknown-user": ("device_password", Credentials(ca, username="devZ", password="x")),
        "tls-wrong-password": ("device_password", Credentials(ca, username="devP", password="wrong")),
        "local-anonymous": ("local", Credentials()),
        "cert-listener-without-certificate": ("device_cert", Credentials(ca, username="devA", password="x")),
    }[case]
    peer = Peer("localhost", secure_broker.ports[port], creds, client_id=f"intruder-{case}")
    assert peer.connect() is not None


@pytest.mark.parametrize("case", ["device-cert-on-operator-listener", "controller-cert-on-device-listener"])
def test_certificates_only_work_on_their_listener(secure_broker: Broker, case: str) -> None:
    if case == "device-cert-on-operator-listener":
        port, creds = secure_broker.ports["operator"], secure_broker.device_creds("devA")
    else:
        port, creds = secure_broker.ports["device_cert"], secure_broker.controller_creds()
    assert Peer("localhost", port, creds, client_id=f"wrong-{case}").connect() is not None


def test_devices_refuse_a_broker_signed_by_another_ca(secure_broker: Broker, tmp_path: Path) -> None:
    other = pki.init_pki(tmp_path / "other")
    creds = Credentials(other.ca_cert, username="devP",
                        password=secure_broker.device_creds("devP").password)
    assert Peer("localhost", secure_broker.ports["device_password"], creds).connect() is not None


@pytest.mark.parametrize("device_id", ["devA", "devP", "devQ"],
                         ids=["client-certificate", "password-mosquitto_passwd", "password-python-hash"])
def test_provisioned_devices_connect_and_publish_their_events(secure_broker: Broker, fleet: str,
                                                               device_id: str) -> None:
    ctl = secure_broker.controller()
    device = secure_broker.device(device_id)
    try:
        ctl.subscribe(topics.all_events(fleet))
        device.publish(topics.events(fleet, device_id), b"hello")
        ctl.expect(topics.events(fleet, device_id), b"hello")
    finally:
        device.close()
        ctl.close()


def test_server_certificate_names_localhost_and_loopback_address(secure_broker: Broker) -> None:
    peer = Peer("127.0.0.1", secure_broker.ports["device_cert"], secure_broker.device_creds("devA"))
    try:
        assert peer.connect() is None
    finally:
        peer.close()


def test_local_plaintext_listener_is_loopback_only(secure_broker: Broker) -> None:
    monitor_password = (secure_broker.layout.root / "accounts" / "controller-monitor").read_text().strip()
    peer = Peer("127.0.0.1", secure_broker.ports["local"],
                Credentials(username="controller-monitor", password=monitor_password))
    try:
        assert peer.connect() is None
    finally:
        peer.close()
    outside = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
               if a.family.name == "AF_INET" and not a.address.startswith("127.")]
    for address in outside:  # this machine has one; a bare sandbox may not
        refused = Peer(address, secure_broker.ports["local"], Credentials(username="controller-monitor",
                                                                           password=monitor_password))
        assert refused.connect() is not None, f"plaintext listener reachable on {address}"


# -- confinement ---------------------------------------------------------------------------


@pytest.mark.parametrize(("attacker", "protocol"), [("devA", mqtt.MQTTv5), ("devA", mqtt.MQTTv311),
                                                    ("devP", mqtt.MQTTv5)],
                         ids=["certificate-v5", "certificate-v311", "password-v5"])
def test_device_cannot_publish_as_another_device(secure_broker: Broker, fleet: str, attacker: str,
                                                 protocol: mqtt.MQTTProtocolVersion) -> None:
    ctl = secure_broker.controller()
    device = secure_broker.device(attacker, protocol=protocol)
    try:
        ctl.subscribe(f"edgebench/v1/{fleet}/#")
        device.publish(topics.events(fleet, "devB"), b"forged event")
        device.publish(topics.status(fleet, "devB"), b"forged status", retain=True)
        device.publish(topics.events(fleet, "devB"), b"forged qos0", qos=0)
        sentinel = topics.events(fleet, attacker)
        device.publish(sentinel, b"sentinel")
        ctl.expect(sentinel, b"sentinel")
        assert _fleet_topics(ctl.settle(), fleet) == [(sentinel, b"sentinel")]
    finally:
        device.close()
        ctl.close()
    # Nor was anything retained under devB's name.
    late = secure_broker.controller()
    try:
        late.subscribe(topics.status(fleet, "devB"))
        assert late.settle() == []
    finally:
        late.close()


def test_device_cannot_read_other_devices_jobs(secure_broker: Broker, fleet: str) -> None:
    ctl = secure_broker.controller()
    device = secure_broker.device("devA")
    try:
        greedy = [topics.jobs(fleet, "devB"), f"edgebench/v1/{fleet}/agents/+/jobs", "edgebench/v1/#", "#"]
        device.subscribe(*greedy)
        granted = device.subscribe(topics.jobs(fleet, "devA"))
        assert not granted[0].is_failure
        ctl.publish(topics.jobs(fleet, "devB"), b"devB's job")
        ctl.publish(topics.events(fleet, "devB"), b"devB's event")  # not a device's to read either
        ctl.publish(topics.jobs(fleet, "devA"), b"sentinel")
        device.expect(topics.jobs(fleet, "devA"), b"sentinel")
        assert {(m.topic, m.payload) for m in device.settle()} == {(topics.jobs(fleet, "devA"), b"sentinel")}
    finally:
        device.close()
        ctl.close()


def test_device_cannot_publish_jobs(secure_broker: Broker, fleet: str) -> None:
    ctl = secure_broker.controller()
    device = secure_broker.device("devA")
    try:
        ctl.subscribe(f"edgebench/v1/{fleet}/#")
        for topic in (topics.jobs(fleet, "devA"), topics.jobs(fleet, "devB"),
                      topics.group_jobs(fleet, "jetson"), topics.fleet_jobs(fleet)):
            device.publish(topic, b"forged job")
            device.publish(topic, b"forged job qos0", qos=0)
        sentinel = topics.events(fleet, "devA")
        device.publish(sentinel, b"sentinel")
        ctl.expect(sentinel, b"sentinel")
        assert _fleet_topics(ctl.settle(), fleet) == [(sentinel, b"sentinel")]
    finally:
        device.close()
        ctl.close()


def test_monitor_account_is_read_only(secure_broker: Broker, fleet: str) -> None:
    password = (secure_broker.layout.root / "accounts" / "controller-monitor").read_text().strip()
    monitor = Peer("127.0.0.1", secure_broker.ports["local"],
                   Credentials(username="controller-monitor", password=password), client_id="controller-monitor")
    assert monitor.connect() is None
    ctl = secure_broker.controller()
    try:
        ctl.subscribe(f"edgebench/v1/{fleet}/#")
        monitor.publish(topics.jobs(fleet, "devA"), b"forged job")
        monitor.publish(topics.status(fleet, "devA"), b"forged status")
        # Pattern lines apply to every user: the monitor has an (unused) device subtree of its own.
        sentinel = topics.events(fleet, "controller-monitor")
        monitor.publish(sentinel, b"sentinel")
        ctl.expect(sentinel, b"sentinel")
        assert _fleet_topics(ctl.settle(), fleet) == [(sentinel, b"sentinel")]
    finally:
        monitor.close()
        ctl.close()


def test_controller_jobs_reach_the_device_directly_and_by_broadcast(secure_broker: Broker, fleet: str) -> None:
    ctl = secure_broker.controller()
    device = secure_broker.device("devA")
    try:
        codes = device.subscribe(topics.jobs(fleet, "devA"), topics.group_jobs(fleet, "jetson"),
                                 topics.fleet_jobs(fleet))
        assert not any(rc.is_failure for rc in codes)
        for topic in (topics.jobs(fleet, "devA"), topics.group_jobs(fleet, "jetson"), topics.fleet_jobs(fleet)):
            ctl.publish(topic, b"job for " + topic.encode())
            device.expect(topic, b"job for " + topic.encode())
    finally:
        device.close()
        ctl.close()


def test_client_id_of_another_device_cannot_be_taken_over(secure_broker: Broker, fleet: str) -> None:
    ctl = secure_broker.controller()
    victim = secure_broker.device("devA")
    creds = secure_broker.device_creds("devB")
    intruder = Peer("localhost", secure_broker.ports["device_cert"], creds, client_id="devA")
    try:
        ctl.subscribe(topics.all_events(fleet))
        assert intruder.connect() is None  # accepted, but as client "devB"
        victim.publish(topics.events(fleet, "devA"), b"still here")
        ctl.expect(topics.events(fleet, "devA"), b"still here")
        assert victim.connected()
    finally:
        intruder.close()
        victim.close()
        ctl.close()


# -- presence ------------------------------------------------------------------------------


def test_status_is_retained_and_the_last_will_marks_the_device_offline(secure_broker: Broker,
                                                                        fleet: str) -> None:
    status = topics.status(fleet, "devA")
    device = secure_broker.device("devA", will=(status, b"offline", True))
    device.publish(status, b"online", retain=True)
    first = secure_broker.controller()
    try:
        first.subscribe(status)
        assert first.expect(status, b"online").retain
        device.kill()
        assert not first.expect(status, b"offline").retain  # live delivery of the will
    finally:
        first.close()
    late = secure_broker.controller()
    try:
        late.subscribe(status)
        assert late.expect(status, b"offline").retain
        late.publish(status, b"", retain=True)  # the controller may clear a retired device
    finally:
        late.close()


def test_last_will_cannot_target_another_device(secure_broker: Broker, fleet: str) -> None:
    ctl = secure_broker.controller()
    try:
        ctl.subscribe(f"edgebench/v1/{fleet}/#")
        creds = secure_broker.device_creds("devA")
        device = Peer("localhost", secure_broker.ports["device_cert"], creds,
                      will=(topics.status(fleet, "devB"), b"forged offline", True))
        if device.connect() is None:  # Mosquitto 2.0 accepts, then drops the will on the ACL check
            device.kill()
        # Reconnecting as devA takes over the old session, so any will is
        # published before this CONNACK and before the sentinel below.
        again = secure_broker.device("devA")
        again.publish(topics.events(fleet, "devA"), b"sentinel")
        ctl.expect(topics.events(fleet, "devA"), b"sentinel")
        again.close()
        assert _fleet_topics(ctl.settle(), fleet) == [(topics.events(fleet, "devA"), b"sentinel")]
    finally:
        ctl.close()


# -- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_oversized_publish_is_dropped(secure_broker: Broker, fleet: str,
                                      protocol: mqtt.MQTTProtocolVersion) -> None:
    """Over message_size_limit (1 MiB) a publish is dropped. An MQTT 3.1.1
    sender stays connected. To an MQTT 5 sender Mosquitto 2.0.11 answers PUBACK
    reason 0x95 (packet too large), a code the spec does not allow in PUBACK, and
    paho 2.2 treats it as a protocol error and drops the connection: agents must
    keep their own messages under the limit."""
    ctl = secure_broker.controller()
    device = secure_broker.device("devA", protocol=protocol)
    try:
        ctl.subscribe(topics.all_events(fleet))
        big = b"x" * (1024 * 1024 + 1)
        if protocol == mqtt.MQTTv311:
            device.publish(topics.events(fleet, "devA"), big)
            assert device.connected()
        else:
            device.publish(topics.events(fleet, "devA"), big, wait=False)
            assert device.wait_disconnected(), "paho 2.2 no longer drops the link on PUBACK 0x95?"
            device.close()
            device = secure_broker.device("devA", protocol=protocol)
        device.publish(topics.events(fleet, "devA"), b"sentinel")
        ctl.expect(topics.events(fleet, "devA"), b"sentinel")
        assert [m.payload for m in ctl.settle()] == [b"sentinel"]
    finally:
        device.close()
        ctl.close()


# -- revocation ----------------------------------------------------------------------------


def test_revoked_devices_are_refused_after_a_restart(tmp_path: Path) -> None:
    layout = pki.init_pki(tmp_path / "pki")
    pki.issue_device(layout, "devKeep")
    pki.issue_device(layout, "devGone", password=pki.generate_password())
    pki.issue_controller(layout)
    done = pki.revoke_device(layout, "devGone")
    assert len(done) == 2  # certificate and password
    broker = start_broker(tmp_path / "mosquitto", layout)
    try:
        gone = layout.device_dir("devGone")
        by_cert = Credentials(gone / "ca.crt", gone / "client.crt", gone / "client.key")
        by_password = Credentials(gone / "ca.crt", username="devGone",
                                  password=(gone / "password").read_text().strip())
        assert Peer("localhost", broker.ports["device_cert"], by_cert).connect() is not None
        assert Peer("localhost", broker.ports["device_password"], by_password).connect() is not None
        keep = broker.device("devKeep")
        keep.close()
    finally:
        stop_broker(broker)
