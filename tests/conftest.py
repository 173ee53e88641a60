"""Shared fixtures: a real Mosquitto broker, agent processes, controller config.

Each test gets its own fleet name, so its topics never meet another test's.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgebench.common.broker import free_port
from edgebench.controller.config import ControllerConfig
from tests.skipsummary import pytest_addoption, pytest_terminal_summary  # noqa: F401 - hooks, by name

REPO = Path(__file__).resolve().parent.parent
# rich sizes tables from COLUMNS: keep CLI output in tests wide and untruncated
os.environ.setdefault("COLUMNS", "200")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


@dataclass
class Mosquitto:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    persistence: bool = True

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto is not installed (.ci/run installs it with apt)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # started as root, mosquitto would drop to user "mosquitto", which
            # cannot write the persistence file here (and so forgets sessions)
            f"user {getpass.getuser()}\n"
            f"persistence {'true' if self.persistence else 'false'}\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            "message_size_limit 0\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "set_tcp_nodelay true\n"  # as deploy/mosquitto: no Nagle stall on small QoS 1 messages
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves persistence on the way out
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    from tests.schemas.wire import WireCapture

    broker = Mosquitto(free_port(), tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    capture = WireCapture(broker.url)  # every message of the session, checked against the JSON Schema
    yield broker
    try:
        capture.check()
    finally:
        broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = Mosquitto(free_port(), tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def fleet() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class AgentProcess:
    device_id: str
    broker_url: str
    fleet: str
    state_dir: Path
    dataset_root: Path
    extra: list[str] = field(default_factory=list)
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra environment (fault injection)

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.device_id}.log"

    def start(self) -> AgentProcess:
        cmd = [sys.executable, "-m", "edgebench.agent.cli", "run", "--broker", self.broker_url,
               "--device-id", self.device_id,
               "--fleet", self.fleet, "--state-dir", str(self.state_dir), "--dataset-root", str(self.dataset_root),
               "--log-level", "INFO", *self.extra]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_agent(tmp_path: Path, mosquitto: Mosquitto, fleet: str) -> Iterator:  # type: ignore[type-arg]
    agents: list[AgentProcess] = []

    def _start(device_id: str = "box1", broker_url: str | None = None, extra: list[str] | None = None,
               config: Path | None = None, state_dir: Path | None = None) -> AgentProcess:
        a = AgentProcess(device_id, broker_url or mosquitto.url, fleet, state_dir or tmp_path / device_id / "state",
                         tmp_path / "datasets", extra or [], config)
        a.state_dir.mkdir(parents=True, exist_ok=True)
        agents.append(a.start())
        return a

    yield _start
    for a in agents:
        a.stop()


@pytest.fixture
def controller_cfg(tmp_path: Path, mosquitto: Mosquitto, fleet: str) -> ControllerConfig:
    return ControllerConfig(broker_url=mosquitto.url, fleet=fleet, store_url=f"sqlite:///{tmp_path / 'results.db'}")
