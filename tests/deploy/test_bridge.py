"""Broker scale-out with real Mosquitto processes on loopback.

Bridge: a central broker running the production configuration (TLS, the ACL
plus deploy/mosquitto/bridge.acl) and a site broker with the rendered
deploy/mosquitto/bridge.conf; a controller on the central broker dispatches, a
real agent process on the site broker runs the job, and the result, the
retained status and the last will come back across the bridge, also across an
outage of the central broker.

Shared subscriptions: two `controller collect --shared-group` processes split
the events of one broker between them; the store keeps each event once.
"""

from __future__ import annotations

import getpass
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgebench.common import pki
from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.controller.config import ControllerConfig
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import Envelope, JobEvent, JobState, topics
from edgebench.schemas.envelope import encode
from tests.conftest import REPO
from tests.deploy.conftest import CONFIG_DIR, MOSQUITTO, PRODUCTION_PORTS, free_ports, render_config
from tests.helpers import sleep_job, wait_online

SITE = "site1"


def _render(template: Path, fleet: str, **values: str) -> str:
    """What `envsubst '${EDGEBENCH_FLEET} ${SITE} ...'` does in production: only
    the listed ${NAME}s are replaced ($SYS stays), and every one must be given."""
    values = {"EDGEBENCH_FLEET": fleet, "SITE": SITE, **values}
    text = template.read_text()
    names = set(re.findall(r"\$\{(\w+)\}", text))
    assert names <= set(values), f"{template.name} needs {names - set(values)}"
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


@dataclass
class BrokerProcess:
    conf: Path
    port: int  # a listener to probe for readiness
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.conf.with_suffix(".log")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> BrokerProcess:
        if MOSQUITTO is None:
            pytest.skip("the mosquitto binary is not installed")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited:\n{self.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # saves persistence on the way out
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Bridged:
    central: BrokerProcess
    central_ports: dict[str, int]
    site: BrokerProcess
    layout: pki.PkiLayout
    fleet: str

    @property
    def site_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.site.port}"

    def controller_cfg(self, store_url: str) -> ControllerConfig:
        """A controller on the central broker's operator listener (TLS, client certificate)."""
        bundle = self.layout.controller_dir("controller")
        return ControllerConfig(broker_url=f"mqtts://localhost:{self.central_ports['operator']}", fleet=self.fleet,
                                store_url=store_url, ca_file=str(bundle / "ca.crt"),
                                cert_file=str(bundle / "client.crt"), key_file=str(bundle / "client.key"))

    def wait_link(self, up: bool = True, timeout_s: float = 60) -> None:
        """Wait for the site broker's own notification of the link's state."""
        client = MqttClient(BrokerSettings.from_url(self.site_url), f"probe-{time.monotonic_ns()}")
        client.connect()
        want = b"1" if up else b"0"
        try:
            client.subscribe([f"$SYS/broker/connection/bridge-{SITE}/state"])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    if client.messages.get(timeout=0.5).payload == want:
                        return
                except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
                    continue
            raise AssertionError(f"bridge link not {'up' if up else 'down'}:\n{self.site.log()[-3000:]}")
        finally:
            client.close()


@pytest.fixture
def bridged(tmp_path: Path, fleet: str) -> Iterator[Bridged]:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed")
    layout = pki.init_pki(tmp_path / "pki", ["broker.test.invalid"])
    pki.issue_controller(layout)
    bridge_bundle = pki.issue_device(layout, f"bridge-{SITE}")  # the bridge's certificate, CN bridge-site1

    # central: /mosquitto/{config,secrets,data} under tmp, production files
    root = tmp_path / "central"
    for d in ("config", "data"):
        (root / d).mkdir(parents=True)
    shutil.copytree(layout.broker_dir, root / "secrets")
    (root / "config" / "acl").write_text((CONFIG_DIR / "acl").read_text() + "\n"
                                         + _render(CONFIG_DIR / "bridge.acl", fleet))
    ports = dict(zip(PRODUCTION_PORTS, free_ports(len(PRODUCTION_PORTS)), strict=True))
    central_conf = root / "config" / "mosquitto.conf"
    central_conf.write_text(render_config((CONFIG_DIR / "mosquitto.conf").read_text(), root, ports))
    central = BrokerProcess(central_conf, ports["operator"]).start()

    # site: a plain loopback listener for its agents, plus the bridge
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    site_port = free_ports(1)[0]
    bridge = _render(CONFIG_DIR / "bridge.conf", fleet, CENTRAL_HOST="localhost",
                     CENTRAL_PORT=str(ports["device_cert"]))
    site_conf = site_dir / "mosquitto.conf"
    site_conf.write_text(
        f"listener {site_port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {site_dir}/\n"
        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
        f"user {getpass.getuser()}\n\n"
        + bridge.replace("/mosquitto/secrets/bridge/", f"{bridge_bundle}/")
    )
    site = BrokerProcess(site_conf, site_port)
    b = Bridged(central, ports, site, layout, fleet)
    try:
        site.start()
        b.wait_link(up=True)
        yield b
    finally:
        site.stop()
        central.stop()


def test_job_and_result_cross_the_bridge(bridged: Bridged, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1", broker_url=bridged.site_url)
    store = ResultStore(f"sqlite:///{tmp_path / 'central.db'}")
    cfg = bridged.controller_cfg(store.url)
    with FleetClient(cfg, store) as fleet:
        # the agent's retained status crossed the bridge
        status = wait_online(fleet, "box1", agents=[agent])["box1"]
        assert status.online
        job = sleep_job("across", epochs=2, steps=3)
        fleet.dispatch([Dispatched("box1", job)])
        assert not fleet.wait({("across", "box1")}, 60), agent.log()[-3000:] + bridged.site.log()[-2000:]
    [row] = store.results(job_id="across")
    assert row.outcome == "OK" and row.img_per_s and row.img_per_s > 0
    assert [e.state for e in store.events_for("across")][-1] is JobState.SUCCEEDED

    # a controller that connects later still finds the status, retained at the central broker
    with FleetClient(cfg, ResultStore(f"sqlite:///{tmp_path / 'late.db'}")) as late:
        assert late.discover(2.0)["box1"].online

    # the agent dies: the site broker publishes its last will, which crosses too
    agent.stop(signal.SIGKILL)
    with FleetClient(cfg, store) as fleet:
        deadline = time.monotonic() + 90  # keepalive 30 s x 1.5, then the will
        while time.monotonic() < deadline and fleet.statuses.get("box1", status).online:
            fleet.pump(0.5)
        assert not fleet.statuses["box1"].online


def test_results_survive_an_outage_of_the_central_broker(bridged: Bridged, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1", broker_url=bridged.site_url)
    store = ResultStore(f"sqlite:///{tmp_path / 'central.db'}")
    cfg = bridged.controller_cfg(store.url)
    job = sleep_job("outage", epochs=2, steps=150)  # ~3 s of "training"
    with FleetClient(cfg, store, collector=True) as fleet:  # persistent session at the central broker
        wait_online(fleet, "box1", agents=[agent])
        fleet.dispatch([Dispatched("box1", job)])
        deadline = time.monotonic() + 30
        while store.job_states([("outage", "box1")]).get(("outage", "box1")) != "IN_PROGRESS":
            assert time.monotonic() < deadline, agent.log()[-3000:]
            fleet.pump(0.2)
        # the central broker goes away while the job runs; the job ends meanwhile
        bridged.central.stop()
        bridged.wait_link(up=False)
        time.sleep(4)
        assert store.job_states([("outage", "box1")])[("outage", "box1")] == "IN_PROGRESS"
        bridged.central.start()  # same ports, same persistence: the collector's session is back
        assert not fleet.wait({("outage", "box1")}, 90), bridged.site.log()[-3000:]
    [row] = store.results(job_id="outage")
    assert row.outcome == "OK"


# -- shared subscriptions: several collectors split the load ------------------------------------

def _publish_events(url: str, fleet: str, devices: int, jobs_per_device: int) -> set[tuple[str, str, int]]:
    """Publish each job's QUEUED and SUCCEEDED events, everything twice (QoS 1 redelivery)."""
    client = MqttClient(BrokerSettings.from_url(url), f"fake-agents-{time.monotonic_ns()}")
    client.connect()
    sent: set[tuple[str, str, int]] = set()
    try:
        for _copy in range(2):
            for d in range(devices):
                device = f"dev{d}"
                for j in range(jobs_per_device):
                    for seq, state in enumerate((JobState.QUEUED, JobState.SUCCEEDED)):
                        ev = JobEvent(job_id=f"job{j}", device_id=device, seq=seq, state=state,
                                      at=datetime.now(timezone.utc))
                        client.publish(topics.events(fleet, device), encode(Envelope.of(sender=device, body=ev)))
                        sent.add((ev.job_id, device, seq))
        assert client.publish_and_wait(topics.events(fleet, "dev0"), b"not json")  # flushes the queue behind it
    finally:
        client.close()
    return sent


def test_two_collectors_split_a_shared_subscription(mosquitto, fleet: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    setup = ResultStore(store_url)  # migrate once, before both collectors start
    for d in range(10):  # the jobs the fake agents report on (events of undispatched jobs are kept aside)
        for j in range(10):
            setup.record_dispatch(f"dev{d}", sleep_job(f"job{j}"))
    setup.close()
    collectors = []
    for name in ("a", "b"):
        log = (tmp_path / f"collector-{name}.log").open("wb")
        collectors.append(subprocess.Popen(
            [sys.executable, "-m", "edgebench.controller.cli", "--broker", mosquitto.url, "--fleet", fleet, "--store",
             store_url, "collect", "--shared-group", "collectors", "--instance", name],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO)))
    logs = [tmp_path / f"collector-{n}.log" for n in ("a", "b")]
    try:
        deadline = time.monotonic() + 60
        while not all("collecting fleet" in p.read_text() for p in logs):
            assert time.monotonic() < deadline, [p.read_text() for p in logs]
            time.sleep(0.2)
        sent = _publish_events(mosquitto.url, fleet, devices=10, jobs_per_device=10)
        store = ResultStore(store_url)
        deadline = time.monotonic() + 60
        while store.count("events") < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for c in collectors:
            c.send_signal(signal.SIGTERM)
        for c in collectors:
            c.wait(30)
    stored = {(e.job_id, e.device_id, e.seq) for d in range(10) for j in range(10)
              for e in store.events_for(f"job{j}") if e.device_id == f"dev{d}"}
    assert stored == sent and store.count("events") == len(sent)
    # each event (and each duplicate) went to one collector of the group: both did part of the work
    printed = [sum(1 for line in p.read_text().splitlines() if "SUCCEEDED" in line or "QUEUED" in line)
               for p in logs]
    assert all(n > 0 for n in printed), printed
    assert sum(printed) == len(sent)  # new events only: no duplicate was stored twice
