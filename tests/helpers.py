"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import time
from typing import Any

from edgebench.common.mqtt import BrokerSettings, MqttClient
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import build_job
from edgebench.schemas import AgentStatus, Envelope, JobEvent, JobSpec, topics
from edgebench.schemas.envelope import decode, encode


def wait_online(fleet: FleetClient, *device_ids: str, timeout_s: float = 180,
                agents: Any = ()) -> dict[str, AgentStatus]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fleet.pump(0.2)
        if all(fleet.statuses.get(d) is not None and fleet.statuses[d].online for d in device_ids):
            return {d: fleet.statuses[d] for d in device_ids}
        for a in agents:
            if a.proc.poll() is not None:
                raise AssertionError(f"agent {a.device_id} exited:\n{a.log()[-3000:]}")
    raise AssertionError(f"agents {device_ids} not online; known: {list(fleet.statuses)}")


def sleep_job(job_id: str, epochs: int = 2, steps: int = 3, **extra: Any) -> JobSpec:
    case = {"backend": "sleep", "workload": "fashion-mnist-mlp", "epochs": epochs, "steps_per_epoch": steps,
            "synthetic": True, **extra}
    return build_job(case, job_id)


def run_jobs(fleet: FleetClient, plan: list[Dispatched], timeout_s: float = 120) -> list[JobEvent]:
    seen: list[JobEvent] = []
    fleet.dispatch(plan)
    still = fleet.wait({(p.job.job_id, p.device_id) for p in plan}, timeout_s, lambda ev, new: seen.append(ev))
    assert not still, f"jobs still open: {still}"
    return seen


class RawClient:
    """A plain MQTT client for sending hand-made (bad) messages and watching events."""

    def __init__(self, url: str, fleet: str, device_id: str):
        self.fleet = fleet
        self.device_id = device_id
        self.client = MqttClient(BrokerSettings.from_url(url), f"raw-{fleet}-{device_id}-{time.monotonic_ns()}")
        self.client.connect()
        self.client.subscribe([topics.events(fleet, device_id)])

    def send(self, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        assert self.client.publish_and_wait(topics.jobs(self.fleet, self.device_id), payload)

    def send_job(self, job: JobSpec) -> None:
        self.send(encode(Envelope.of(sender="test", body=job)))

    def events(self, timeout_s: float, until: Any = None) -> list[JobEvent]:
        out: list[JobEvent] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = self.client.messages.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            body = decode(msg.payload).body
            assert isinstance(body, JobEvent)
            out.append(body)
            if until is not None and until(out):
                break
        return out

    def close(self) -> None:
        self.client.close()
