"""A client id belongs to the credential that proves it, on every listener of deploy/mosquitto.

Found by a hostile review (2026-12-01): the plaintext loopback listener accepted
every account of the password file without tying the client id to the user.
dev-a's password with client id "dev-b" disconnected dev-b, the read-only monitor
kicked a real agent, and a clean-start connection under another id destroyed that
client's queued jobs. ``use_username_as_clientid`` on that listener (as on the
device listeners) makes the broker replace whatever id a client asks for with its
username. Each case here ran against the old configuration and failed.
"""

from __future__ import annotations

import time
import uuid

import pytest

from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.schemas import topics
from tests.deploy.conftest import CONFIG_DIR, Broker
from tests.deploy.peer import Credentials, Peer


@pytest.fixture()
def fleet() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _password(broker: Broker, account: str) -> str:
    accounts = broker.layout.root / "accounts" / account
    if accounts.exists():
        return accounts.read_text().strip()
    return (broker.layout.device_dir(account) / "password").read_text().strip()


def _loopback(broker: Broker, account: str, client_id: str) -> Peer:
    return Peer("127.0.0.1", broker.ports["local"], Credentials(username=account, password=_password(broker, account)),
                client_id=client_id)


def test_every_listener_ties_the_client_id_to_its_credential() -> None:
    conf = (CONFIG_DIR / "mosquitto.conf").read_text()
    blocks = [b for b in conf.split("\nlistener ")[1:]]
    for block in blocks:
        port = block.split()[0]
        if "use_identity_as_username true" in block and "require_certificate true" in block and \
                "operator-ca" in block:
            continue  # the operators' listener: see test_operator_listener_is_for_operator_certificates_only
        assert "use_username_as_clientid true" in block, f"listener {port} lets a client pick any id"


@pytest.mark.parametrize("intruder", ["devP", "controller-monitor"])
def test_another_account_on_loopback_cannot_disconnect_a_device(secure_broker: Broker, fleet: str,
                                                                intruder: str) -> None:
    ctl = secure_broker.controller()
    victim = secure_broker.device("devQ")  # on the password listener: its client id is "devQ"
    thief = _loopback(secure_broker, intruder, client_id="devQ")
    try:
        ctl.subscribe(topics.events(fleet, "devQ"))
        assert thief.connect() is None  # accepted, but under its own name
        time.sleep(0.5)  # a takeover disconnects the victim at once
        assert victim.connected(), secure_broker.log()[-2000:]
        victim.publish(topics.events(fleet, "devQ"), b"still here")
        ctl.expect(topics.events(fleet, "devQ"), b"still here")
    finally:
        thief.close()
        victim.close()
        ctl.close()


def test_a_clean_start_under_another_id_keeps_the_devices_queued_jobs(secure_broker: Broker, fleet: str) -> None:
    """The device's persistent session holds a job while it is offline; a clean-start
    connection that names the device's client id must not wipe that session."""
    bundle = secure_broker.layout.device_dir("devQ")
    settings = BrokerSettings(host="localhost", port=secure_broker.ports["device_password"], tls=True,
                              username="devQ", password=_password(secure_broker, "devQ"),
                              ca_file=str(bundle / "ca.crt"))
    device = MqttClient(settings, "devQ", persistent_session_s=600, manual_ack=True)
    device.connect()
    device.subscribe([topics.jobs(fleet, "devQ")])
    device.close()  # offline, session kept
    ctl = secure_broker.controller()
    try:
        ctl.publish(topics.jobs(fleet, "devQ"), b"the queued job")
    finally:
        ctl.close()
    thief = _loopback(secure_broker, "devP", client_id="devQ")  # clean start (paho's default)
    assert thief.connect() is None
    thief.close()
    device = MqttClient(settings, "devQ", persistent_session_s=600, manual_ack=True)
    device.connect()
    try:
        msg = device.messages.get(timeout=5)
        assert (msg.topic, msg.payload) == (topics.jobs(fleet, "devQ"), b"the queued job")
        device.ack(msg)
    finally:
        device.close(end_session=True)


def test_operator_listener_is_for_operator_certificates_only(secure_broker: Broker) -> None:
    """The operators' listener lets controllers pick client ids (several controller
    processes run at once); only certificates of the operator CA get there, and
    an operator can dispatch to every device anyway (docs/SECURITY.md)."""
    creds = secure_broker.device_creds("devA")
    assert Peer("localhost", secure_broker.ports["operator"], creds, client_id="devB").connect() is not None
    password_account = Credentials(secure_broker.layout.ca_cert, username="devQ",
                                   password=_password(secure_broker, "devQ"))
    assert Peer("localhost", secure_broker.ports["operator"], password_account,
                client_id="devB").connect() is not None
