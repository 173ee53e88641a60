"""A real Mosquitto running deploy/mosquitto/mosquitto.conf and its ACL, with
certificates and passwords made by edgebench.common.pki.

The configuration is the production file itself: only its ``/mosquitto/``
prefix and the four listener ports are rewritten (plus ``user``, so that a
broker started by root keeps the rights to read its 0600 secrets, which in
production belong to the mosquitto user).
"""

from __future__ import annotations

import getpass
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgebench.common import pki
from tests.deploy.peer import Credentials, Peer

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "deploy" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
PRODUCTION_PORTS = {"local": 1883, "device_cert": 8883, "device_password": 8884, "operator": 8885}

CERT_DEVICES = ("devA", "devB")
PASSWORD_DEVICES = ("devP", "devQ")


@dataclass
class Broker:
    root: Path
    layout: pki.PkiLayout
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- credentials ----------------------------------------------------------------------

    def device_creds(self, device_id: str) -> Credentials:
        bundle = self.layout.device_dir(device_id)
        if (bundle / "client.crt").exists():
            return Credentials(bundle / "ca.crt", bundle / "client.crt", bundle / "client.key")
        return Credentials(bundle / "ca.crt", username=device_id,
                           password=(bundle / "password").read_text().strip())

    def controller_creds(self) -> Credentials:
        bundle = self.layout.controller_dir("controller")
        return Credentials(bundle / "ca.crt", bundle / "client.crt", bundle / "client.key")

    # -- peers ----------------------------------------------------------------------------

    def device(self, device_id: str, **kwargs: object) -> Peer:
        """A connected device on the listener its credentials are for."""
        creds = self.device_creds(device_id)
        port = self.ports["device_cert" if creds.cert_file else "device_password"]
        peer = Peer("localhost", port, creds, client_id=device_id, **kwargs)  # type: ignore[arg-type]
        assert peer.connect() is None, self.log()[-2000:]
        return peer

    def controller(self, **kwargs: object) -> Peer:
        peer = Peer("localhost", self.ports["operator"], self.controller_creds(),
                    client_id=f"controller-test-{time.monotonic_ns()}", **kwargs)  # type: ignore[arg-type]
        assert peer.connect() is None, self.log()[-2000:]
        return peer


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def render_config(text: str, root: Path, ports: dict[str, int]) -> str:
    """The production config with its paths under ``root`` and its ports replaced."""
    by_port = {str(PRODUCTION_PORTS[k]): str(v) for k, v in ports.items()}
    text = text.replace("/mosquitto/", f"{root}/")
    text = re.sub(r"^listener (\d+)", lambda m: f"listener {by_port[m.group(1)]}", text, flags=re.MULTILINE)
    return text + f"\nuser {getpass.getuser()}\n"


def provision(root: Path) -> pki.PkiLayout:
    layout = pki.init_pki(root, ["broker.test.invalid"])
    for device_id in CERT_DEVICES:
        pki.issue_device(layout, device_id)
    # devP through the public path (mosquitto_passwd, which is installed here);
    # devQ's hash computed by edgebench.common.pki itself, as on a host without mosquitto.
    pki.issue_device(layout, "devP", cert=False, password=pki.generate_password())
    out = layout.device_dir("devQ")
    out.mkdir(parents=True)
    shutil.copyfile(layout.ca_cert, out / "ca.crt")
    password = pki.generate_password()
    pki.set_password(layout.passwd, "devQ", password, use_binary=False)
    (out / "password").write_text(password)
    pki.issue_controller(layout)
    pki.issue_account(layout, "controller-monitor")
    return layout


def start_broker(root: Path, layout: pki.PkiLayout) -> Broker:
    """Lay out /mosquitto/{config,secrets,data} under ``root`` and start the broker."""
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed")
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    shutil.rmtree(root / "secrets", ignore_errors=True)
    shutil.copytree(layout.broker_dir, root / "secrets")
    shutil.copyfile(CONFIG_DIR / "acl", root / "config" / "acl")
    for attempt in range(3):  # a free port can be taken between probe and bind
        ports = dict(zip(PRODUCTION_PORTS, free_ports(len(PRODUCTION_PORTS)), strict=True))
        conf = root / "config" / "mosquitto.conf"
        conf.write_text(render_config((CONFIG_DIR / "mosquitto.conf").read_text(), root, ports))
        log_path = root / f"mosquitto-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        broker = Broker(root, layout, ports, proc, log_path)
        if _wait_listening(broker, timeout_s=10.0):
            return broker
        stop_broker(broker)
        if "Address already in use" not in broker.log():
            break
    raise RuntimeError(f"mosquitto did not start:\n{broker.log()}")


def _wait_listening(broker: Broker, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    pending = set(broker.ports.values())
    while pending and time.monotonic() < deadline:
        if broker.process.poll() is not None:
            return False
        for port in list(pending):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pending.discard(port)
        if pending:
            time.sleep(0.02)
    return not pending


def stop_broker(broker: Broker) -> None:
    if broker.process.poll() is None:
        broker.process.terminate()
        try:
            broker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            broker.process.kill()
            broker.process.wait()


@pytest.fixture(scope="session")
def pki_layout(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiLayout:
    return provision(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, pki_layout: pki.PkiLayout) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("mosquitto"), pki_layout)
    yield broker
    stop_broker(broker)
