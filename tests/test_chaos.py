"""Chaos: jobs on two agents while the broker, an agent and the collector are killed at random.

A fixed seed picks what dies and when (SIGKILL: no clean-up, no broker
autosave, so a killed broker forgets every session, queued job and event it
had acknowledged since it started). The collector reconciles every few
seconds (controller/reconcile.py). Afterwards every job must be terminal
exactly once: one result row, one terminal event, and a measured result for
each job that succeeded; the chaos is bounded in time.

EDGEBENCH_CHAOS_JOBS (default 20) and EDGEBENCH_CHAOS_SECONDS (default 45)
scale it; the longer run of docs/JOBS.md used 200 jobs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgebench.controller.config import ControllerConfig
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import TERMINAL_STATES
from tests.agent.conftest import sleep_backend, write_agent_config
from tests.conftest import REPO, AgentProcess, Mosquitto
from tests.helpers import sleep_job, wait_online

SEED = int(os.environ.get("EDGEBENCH_CHAOS_SEED", "1201"))
JOBS = int(os.environ.get("EDGEBENCH_CHAOS_JOBS", "20"))
CHAOS_S = float(os.environ.get("EDGEBENCH_CHAOS_SECONDS", "45"))

pytestmark = pytest.mark.slow


class Collector:
    def __init__(self, broker: Mosquitto, fleet: str, store_url: str, log: Path):
        self.args = [sys.executable, "-m", "edgebench.controller.cli", "--broker", broker.url, "--fleet", fleet,
                     "--store", store_url, "collect", "--reconcile-every", "3", "--reconcile-grace", "3",
                     "--reconcile-queued-after", "8"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=str(REPO))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def _kill_broker(broker: Mosquitto) -> None:
    assert broker.proc is not None
    broker.proc.kill()  # SIGKILL: no autosave, sessions and queues since the start are gone
    broker.proc.wait(10)


def test_chaos(private_mosquitto: Mosquitto, fleet: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    broker = private_mosquitto
    store_url = f"sqlite:///{tmp_path / 'chaos.db'}"
    cfg = ControllerConfig(broker_url=broker.url, fleet=fleet, store_url=store_url)
    config = write_agent_config(tmp_path / "agent.yaml", backends=sleep_backend())
    agents = {name: AgentProcess(name, broker.url, fleet, tmp_path / name / "state", tmp_path / "data", [], config)
              for name in ("box1", "box2")}
    for a in agents.values():
        a.state_dir.mkdir(parents=True)
        a.start()
    collector = Collector(broker, fleet, store_url, tmp_path / "collector.log")
    collector.start()
    store = ResultStore(store_url)
    # short jobs, so that most finish during the chaos; a short step timeout, so that
    # reconciliation asks about a silent running job after seconds, not minutes
    plan = [Dispatched(f"box{1 + i % 2}", sleep_job(f"c{i:03d}", epochs=2, steps=rng.randint(20, 120),
                                                    step_timeout_s=6.0)) for i in range(JOBS)]
    kills = {"broker": 0, "agent": 0, "collector": 0}
    try:
        with FleetClient(cfg, store) as fc:
            wait_online(fc, "box1", "box2", agents=list(agents.values()))
            fc.dispatch(plan)
        t_end = time.monotonic() + CHAOS_S
        while time.monotonic() < t_end:
            time.sleep(rng.uniform(1.0, 5.0))
            victim = rng.choice(["broker", "agent", "collector"])
            kills[victim] += 1
            if victim == "broker":
                _kill_broker(broker)
                time.sleep(rng.uniform(0.2, 2.0))
                broker.start()
            elif victim == "agent":
                a = agents[rng.choice(sorted(agents))]
                a.stop(signal.SIGKILL)
                time.sleep(rng.uniform(0.2, 2.0))
                a.start()
            else:
                collector.kill()
                time.sleep(rng.uniform(0.2, 2.0))
                collector.start()
        keys = {(p.job.job_id, p.device_id) for p in plan}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            states = store.job_states(keys)
            if len(states) == len(keys) and all(s in {t.value for t in TERMINAL_STATES} for s in states.values()):
                break
            for a in agents.values():
                assert a.proc is not None and a.proc.poll() is None, a.log()[-3000:]
            time.sleep(1.0)
    finally:
        collector.stop()
        for a in agents.values():
            a.stop()
    states = store.job_states(keys)
    open_jobs = {k: v for k, v in states.items() if v not in {t.value for t in TERMINAL_STATES}}
    print(f"\nchaos (seed {SEED}, {JOBS} jobs, {CHAOS_S:g} s): kills {kills}; outcomes "
          f"{sorted((v, list(states.values()).count(v)) for v in set(states.values()))}", file=sys.stderr)
    assert not open_jobs, f"still open after reconciliation: {open_jobs}\n" + \
        (tmp_path / "collector.log").read_text(errors="replace")[-3000:]
    for job_id, device in keys:
        rows = store.results(job_id=job_id, device_id=device)
        assert len(rows) == 1, (job_id, rows)
        terminal = [e for e in store.events_for(job_id) if e.state in TERMINAL_STATES and e.device_id == device]
        assert len(terminal) == 1, (job_id, [e.state for e in terminal])
        if rows[0].outcome == "OK":
            assert rows[0].img_per_s and rows[0].result_json
        else:  # only a kill explains a failure of these jobs
            assert rows[0].error_type in ("Interrupted", "Lost"), (job_id, rows[0].error_type, rows[0].reason)
    assert sum(kills.values()) >= 5
