"""Helpers for the job-system tests: agent configs, an event watcher, the
runner processes of an agent, and the hypothesis profiles of the fuzz test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from hypothesis import HealthCheck, settings

from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobEvent, JobSpec, JobState

# One profile for everyone: no example database (nothing written into the
# checkout), no deadline (a broker round trip is not a unit of work).
settings.register_profile(
    "edgebench",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture],
)
settings.load_profile("edgebench")


def write_agent_config(path: Path, **fields: Any) -> Path:
    """An agent YAML; device id, broker and dirs come from start_agent's flags."""
    path.write_text(yaml.safe_dump(fields))
    return path


def sleep_backend(fault: str | None = None) -> dict[str, Any]:
    """Only the diagnostic backend (fast probe); ``fault`` see runner/sleep.py."""
    env = {"EDGEBENCH_SLEEP_FAULT": fault} if fault else {}
    return {"sleep": {"executor": "local", "env": env}}


class Watcher:
    """A controller connection that remembers every event it ingested."""

    def __init__(self, fc: FleetClient):
        self.fc = fc
        self.events: list[tuple[float, JobEvent, bool]] = []

    def _record(self, ev: JobEvent, new: bool) -> None:
        self.events.append((time.monotonic(), ev, new))

    def pump(self, timeout_s: float = 0.1) -> None:
        self.fc.pump(timeout_s, self._record)

    def of(self, job_id: str) -> list[JobEvent]:
        return [ev for _, ev, new in self.events if ev.job_id == job_id and new]

    def wait_for(self, job_id: str, states: set[JobState] | JobState, timeout_s: float = 60,
                 agent: Any = None) -> JobEvent:
        wanted = {states} if isinstance(states, JobState) else states
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for ev in self.of(job_id):
                if ev.state in wanted:
                    return ev
            if agent is not None and agent.proc.poll() is not None:
                raise AssertionError(f"agent exited:\n{agent.log()[-3000:]}")
            self.pump(0.1)
        seen = [e.state.value for e in self.of(job_id)]
        log = agent.log()[-3000:] if agent is not None else ""
        raise AssertionError(f"{job_id}: no {sorted(s.value for s in wanted)} within {timeout_s} s; saw {seen}\n{log}")

    def first_time(self, job_id: str, state: JobState) -> float:
        return next(t for t, ev, new in self.events if ev.job_id == job_id and ev.state == state and new)

    def dispatch(self, device_id: str, *jobs: JobSpec) -> None:
        self.fc.dispatch([Dispatched(device_id, j) for j in jobs])


@pytest.fixture
def watcher(controller_cfg: Any) -> Iterator[Watcher]:
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        yield Watcher(fc)


def runner_processes(agent: Any) -> list[psutil.Process]:
    """Every process below the agent (the runner and whatever it started)."""
    try:
        return psutil.Process(agent.proc.pid).children(recursive=True)
    except psutil.Error:
        return []


def wait_runner_tree(agent: Any, n: int = 2, timeout_s: float = 20) -> list[psutil.Process]:
    """Wait until at least n processes run below the agent; return them."""
    def enough() -> list[psutil.Process] | None:
        procs = runner_processes(agent)
        return procs if len(procs) >= n else None

    return wait_until(enough, timeout_s, f"{n} processes below the agent")


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def all_gone(procs: list[psutil.Process]) -> bool:
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True
