#!/usr/bin/env python3
"""Fleet-scale benchmark: many real agents on one Mosquitto, one controller.

    .venv/bin/python benchmarks/fleet_scale.py [--agents 1000] [--hosts 40] [--out FILE.json]

What is real: the Mosquitto broker; every agent is an ``agent.daemon.Agent``
(its own MQTT connection, persistent session, SQLite store and outbox, worker
and publisher threads, backend probe, status with last will); the controller is
``controller.fleet.FleetClient`` with a SQLite ``ResultStore``. Agents are
hosted many per process (``--hosts`` processes) to fit on one machine: that,
and sharing the machine's cores, is the simulation.

Two scenarios, one job per agent each:

``reject``  the job names a backend the agents do not have, so each agent
            validates it and answers REJECTED: the whole control plane
            (dispatch, intake, durable outbox, event, ingestion) without a runner.
``run``     a ``sleep`` job of 1 epoch x 1 step (10 ms of "training"): each
            agent starts a real runner subprocess (``python -m runner``), follows
            its JSON-lines protocol, assembles the Result with its fingerprint and
            publishes it. On a real fleet every runner starts on its own box; here
            all 1,000 start on the benchmark machine's cores, so this scenario is
            bounded below by 1,000 interpreter start-ups.

It also measures the idle RSS of one real ``agent run`` process, and the RSS of
the controller, the broker and the agent host processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgebench.common.broker import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _raise_fd_limit() -> None:
    # each agent holds a socket and its SQLite files (db, -wal, -shm)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))




def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# -- agent host process -----------------------------------------------------------------------

def host_main(args: argparse.Namespace) -> None:
    """Run ``count`` agents in this process until stdin closes; print stats as JSON."""
    import logging

    from edgebench.agent.config import AgentConfig
    from edgebench.agent.daemon import Agent

    logging.basicConfig(level=logging.WARNING)
    _raise_fd_limit()
    root = Path(args.root)
    t0 = time.perf_counter()
    agents = []
    for i in range(args.first, args.first + args.count):
        device = f"sim{i:04d}"
        cfg = AgentConfig(device_id=device, broker_url=args.broker, fleet=args.fleet,
                          state_dir=root / device, dataset_root=root / "datasets", telemetry="none",
                          sample_interval_s=args.sample_interval)
        agents.append(Agent(cfg))
    built_s = time.perf_counter() - t0
    stop = threading.Event()
    threads = [threading.Thread(target=a.run, args=(stop,), daemon=True) for a in agents]
    for t in threads:
        t.start()
    print(json.dumps({"ready": True, "build_s": built_s}), flush=True)
    sys.stdin.read()  # the benchmark closes our stdin to stop us
    cpu = os.times()
    stats = {
        "rss_mb": _rss_mb(os.getpid()),
        "threads": threading.active_count(),
        "cpu_s": cpu.user + cpu.system,
        "children_cpu_s": cpu.children_user + cpu.children_system,
        "build_s": built_s,
    }
    stop.set()
    for t in threads:
        t.join(10)
    print(json.dumps(stats), flush=True)


# -- the benchmark ------------------------------------------------------------------------------

def _json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The next JSON line a host prints (py-spy, when wrapping it, prints its own lines)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"agent host {proc.pid} exited without reporting")


class Mosquitto:
    def __init__(self, workdir: Path):
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_connections -1\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stderr=(workdir / "mosquitto.log").open("wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def measure_agent_idle_rss(broker_url: str, workdir: Path, idle_s: float = 10.0) -> dict[str, Any]:
    """A real `agent run` process (default config: five backends probed), idle."""
    import psutil

    cmd = [sys.executable, "-m", "edgebench.agent.cli", "run", "--broker", broker_url, "--device-id", "idle-rss",
           "--fleet", "rss", "--state-dir", str(workdir / "idle-agent"), "--dataset-root", str(workdir)]
    proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(idle_s)
        p = psutil.Process(proc.pid)
        mem = p.memory_full_info()
        cpu = p.cpu_times()
        return {"rss_mb": mem.rss / 2**20, "uss_mb": mem.uss / 2**20, "threads": p.num_threads(),
                "cpu_s_after_idle": cpu.user + cpu.system, "idle_s": idle_s}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _cpu_s(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far per component; for agent hosts, their runner children too."""
    import psutil

    out: dict[str, float] = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
            if name == "agent_hosts":
                out["runners"] = out.get("runners", 0.0) + t.children_user + t.children_system
        out[name] = total
    return out


def run_scenario(fleet: Any, scenario: str, device_ids: list[str], timeout_s: float,
                 pids: dict[str, list[int]]) -> dict[str, Any]:
    from edgebench.controller.fleet import Dispatched
    from edgebench.controller.plan import build_job

    tag = f"{scenario}-{int(time.time())}"
    backend = "keras-tensorflow1" if scenario == "reject" else "sleep"  # not configured on the agents
    case = {"backend": backend, "workload": "fashion-mnist-mlp", "epochs": 1, "warmup_epochs": 0,
            "steps_per_epoch": 1, "synthetic": True}
    plan = [Dispatched(d, build_job(case, f"{tag}-{d}")) for d in device_ids]
    keys = {(p.job.job_id, p.device_id) for p in plan}
    first_state: dict[str, dict[tuple[str, str], float]] = {}
    cpu0 = _cpu_s(pids)
    t0 = time.perf_counter()

    def on_event(ev: Any, new: bool) -> None:
        first_state.setdefault(ev.state.value, {}).setdefault((ev.job_id, ev.device_id), time.perf_counter() - t0)

    fleet.dispatch(plan)
    dispatched_s = time.perf_counter() - t0
    still_open = fleet.wait(keys, timeout_s, on_event)
    total_s = time.perf_counter() - t0
    cpu1 = _cpu_s(pids)
    outcomes: dict[str, int] = {}
    for r in fleet.store.results(sweep_id=None):
        if r.job_id.startswith(tag):
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1

    def pct(state: str, q: float) -> float | None:
        times = sorted(first_state.get(state, {}).values())
        return round(times[min(len(times) - 1, int(q * len(times)))], 3) if times else None

    return {
        "jobs": len(plan),
        "dispatch_s": round(dispatched_s, 3),
        "all_results_stored_s": round(total_s, 3),
        "still_open": len(still_open),
        "outcomes": outcomes,
        "first_event_s_p50": {s: pct(s, 0.5) for s in first_state},
        "first_event_s_max": {s: pct(s, 1.0) for s in first_state},
        # CPU spent during the scenario, per component (runners: reaped runner subprocesses)
        "cpu_s": {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    host = sub.add_parser("host")  # internal: one agent host process
    host.add_argument("--first", type=int, required=True)
    host.add_argument("--count", type=int, required=True)
    host.add_argument("--broker", required=True)
    host.add_argument("--fleet", required=True)
    host.add_argument("--root", required=True)
    host.add_argument("--sample-interval", type=float, required=True)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=40,
                        help="agent host processes (1,000 agents: 25 each; docs/PERFORMANCE_SCALE.md says why)")
    parser.add_argument("--scenarios", default="reject,run")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--sample-interval", type=float, default=0.1,
                        help="the agents' telemetry sampling interval (agent default 0.1 s)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--pyspy", type=Path, help="profile the agent hosts with py-spy into this directory")
    args = parser.parse_args()
    if args.cmd == "host":
        host_main(args)
        return

    import psutil

    from edgebench.controller.config import ControllerConfig
    from edgebench.controller.fleet import FleetClient
    from edgebench.controller.store import ResultStore

    _raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    broker = Mosquitto(work)
    fleet_name = f"scale{os.getpid()}"
    store = ResultStore(f"sqlite:///{work / 'results.db'}")
    cfg = ControllerConfig(broker_url=broker.url, fleet=fleet_name, store_url=store.url)
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_model": _cpu_model(), "logical_cores": os.cpu_count(),
                    "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()},
        "agents": args.agents, "host_processes": args.hosts, "sample_interval_s": args.sample_interval,
    }
    hosts: list[subprocess.Popen[str]] = []
    try:
        report["agent_idle"] = measure_agent_idle_rss(broker.url, work)
        print(f"agent idle RSS {report['agent_idle']['rss_mb']:.1f} MB", flush=True)
        with FleetClient(cfg, store) as fleet:
            t0 = time.perf_counter()
            per_host = -(-args.agents // args.hosts)
            for n in range(args.hosts):
                first, count = n * per_host, min(per_host, args.agents - n * per_host)
                if count <= 0:
                    break
                cmd = [sys.executable, __file__, "host", "--first", str(first), "--count", str(count),
                       "--broker", broker.url, "--fleet", fleet_name, "--root", str(work / "agents"),
                       "--sample-interval", str(args.sample_interval)]
                if args.pyspy:  # sample the host with py-spy (collapsed stacks, idle threads left out)
                    args.pyspy.mkdir(parents=True, exist_ok=True)
                    cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--rate", "50",
                           "-o", str(args.pyspy / f"host{n}.txt"), "--", *cmd]
                hosts.append(subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(REPO)))
            build = [_json_line(h)["build_s"] for h in hosts]
            device_ids = [f"sim{i:04d}" for i in range(args.agents)]
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                fleet.pump(0.2)
                if sum(1 for d in device_ids if d in fleet.statuses and fleet.statuses[d].online) == args.agents:
                    break
            online = sum(1 for d in device_ids if d in fleet.statuses and fleet.statuses[d].online)
            report["startup"] = {"all_online_s": round(time.perf_counter() - t0, 3), "online": online,
                                 "agent_construction_s_per_host": [round(b, 2) for b in build]}
            print(f"{online} agents online after {report['startup']['all_online_s']} s", flush=True)
            time.sleep(5)  # settle: let every retained status and first publish pass
            idle_cpu0 = {h.pid: sum(psutil.Process(h.pid).cpu_times()[:2]) for h in hosts}
            time.sleep(10)
            report["idle_host_cpu_percent_of_a_core"] = round(sum(
                sum(psutil.Process(h.pid).cpu_times()[:2]) - idle_cpu0[h.pid] for h in hosts) / 10 * 100, 1)
            report["rss_mb_idle"] = {
                "controller": round(_rss_mb(os.getpid()), 1), "broker": round(_rss_mb(broker.proc.pid), 1),
                "agent_hosts_total": round(sum(_rss_mb(h.pid) for h in hosts), 1)}
            report["rss_mb_idle"]["per_simulated_agent"] = round(
                report["rss_mb_idle"]["agent_hosts_total"] / args.agents, 2)
            for scenario in args.scenarios.split(","):
                pids = {"controller": [os.getpid()], "broker": [broker.proc.pid],
                        "agent_hosts": [h.pid for h in hosts]}
                res = run_scenario(fleet, scenario, device_ids, args.timeout, pids)
                report[f"scenario_{scenario}"] = res
                print(scenario, json.dumps(res), flush=True)
            report["rss_mb_after"] = {"controller": round(_rss_mb(os.getpid()), 1),
                                      "broker": round(_rss_mb(broker.proc.pid), 1),
                                      "agent_hosts_total": round(sum(_rss_mb(h.pid) for h in hosts), 1)}
        host_stats = []
        for h in hosts:
            out, _ = h.communicate("", timeout=120)
            host_stats.append(json.loads([x for x in out.splitlines() if x.startswith("{")][-1]))
        report["hosts"] = host_stats
        report["runner_cpu_s_total"] = round(sum(s["children_cpu_s"] for s in host_stats), 1)
        report["agent_hosts_cpu_s_total"] = round(sum(s["cpu_s"] for s in host_stats), 1)
        report["controller_cpu_s"] = round(sum(os.times()[:2]), 1)
    finally:
        for h in hosts:
            if h.poll() is None:
                h.kill()
        broker.stop()
        store.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
