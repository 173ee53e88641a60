#!/usr/bin/env python3
"""Control-plane benchmark: job latency through a real agent, and the
collector's ingestion rate, against Mosquitto on loopback.

    .venv/bin/python benchmarks/control_plane.py [--jobs 100] [--events 5000] [--out FILE.json]

``latency``    One real ``agent run`` process (the diagnostic ``sleep`` backend,
               2 epochs of 1 step) and one controller (``FleetClient`` with a
               SQLite store). Jobs go one at a time; for each, the controller's
               clock runs from ``dispatch()`` (store the job, publish, wait for
               the broker's PUBACK) to the moment it has stored the agent's
               QUEUED, IN_PROGRESS and terminal events. Dispatch -> IN_PROGRESS
               is the control plane alone: the agent emits IN_PROGRESS before
               it starts the runner. Dispatch -> SUCCEEDED adds the runner's
               interpreter start-up and its ~20 ms of "training".
``ingestion``  A simulated agent publishes N SUCCEEDED events, each with a
               full Result (made once by a real sleep runner, so fingerprint,
               job spec and epoch stats are all there), while the collector is
               away; its persistent session keeps them. Then the collector
               (``FleetClient(collector=True)``) connects and the clock runs
               until all N results are in its store. Once with events stored in
               batches (one transaction per batch, the default) and once with
               one transaction per event.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgebench.common.broker import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))




def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "load_avg_1m": os.getloadavg()[0]}


class Broker:
    def __init__(self, workdir: Path, nodelay: bool = True):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 1000000\nmax_inflight_messages 0\nlog_dest none\n"
                        + ("set_tcp_nodelay true\n" if nodelay else ""))
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- latency ----------------------------------------------------------------------------------

def bench_latency(broker: Broker, workdir: Path, jobs: int) -> dict[str, Any]:
    import yaml

    from edgebench.controller.config import ControllerConfig
    from edgebench.controller.fleet import Dispatched, FleetClient
    from edgebench.controller.plan import build_job
    from edgebench.controller.store import ResultStore
    from edgebench.schemas import TERMINAL_STATES, JobEvent, JobState

    fleet = f"lat{uuid.uuid4().hex[:8]}"
    config = workdir / "agent.yaml"
    config.write_text(yaml.safe_dump({"backends": {"sleep": {"executor": "local"}}, "telemetry": "none"}))
    log = (workdir / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "edgebench.agent.cli", "run", "--config", str(config), "--broker", broker.url,
         "--device-id", "bench1", "--fleet", fleet, "--state-dir", str(workdir / "agent-state"),
         "--dataset-root", str(workdir), "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    cfg = ControllerConfig(broker_url=broker.url, fleet=fleet, store_url=f"sqlite:///{workdir / 'latency.db'}")
    store = ResultStore(cfg.store_url)
    seen: dict[str, dict[JobState, float]] = {}

    def on_event(ev: JobEvent, new: bool) -> None:
        if new:
            seen.setdefault(ev.job_id, {}).setdefault(ev.state, time.perf_counter())

    try:
        with FleetClient(cfg, store) as fc:
            deadline = time.monotonic() + 60
            while not (fc.statuses.get("bench1") and fc.statuses["bench1"].online):
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise RuntimeError("agent did not come online: " + (workdir / "agent.log").read_text())
                fc.pump(0.1)
            rows = []
            for i in range(jobs + 3):  # 3 warm-up jobs
                job = build_job({"backend": "sleep", "workload": "fashion-mnist-mlp", "epochs": 2,
                                 "steps_per_epoch": 1, "synthetic": True}, f"lat-{i:04d}")
                t0 = time.perf_counter()
                fc.dispatch([Dispatched("bench1", job)])
                end = time.monotonic() + 60
                while not (seen.get(job.job_id, {}).keys() & TERMINAL_STATES):
                    if time.monotonic() > end:
                        raise RuntimeError(f"{job.job_id} did not finish")
                    fc.pump(0.05, on_event)
                marks = seen[job.job_id]
                if i >= 3:
                    rows.append({state.value: (t - t0) * 1000 for state, t in marks.items()})
    finally:
        agent.terminate()
        agent.wait(30)
    out: dict[str, Any] = {"jobs": len(rows)}
    for state in ("QUEUED", "IN_PROGRESS", "SUCCEEDED"):
        values = [r[state] for r in rows if state in r]
        out[state] = {"p50_ms": _percentile(values, 50), "p99_ms": _percentile(values, 99),
                      "mean_ms": statistics.fmean(values), "max_ms": max(values), "n": len(values)}
    return out


# -- ingestion --------------------------------------------------------------------------------

def real_result(workdir: Path) -> Any:
    """One Result as the agent builds it, from a real sleep runner."""
    from edgebench.agent.config import LocalBackend
    from edgebench.agent.executors import LocalExecutor, install_runner_code
    from edgebench.agent.fingerprint import machine_fingerprint
    from edgebench.agent.jobrun import JobRun
    from edgebench.controller.plan import build_job

    job = build_job({"backend": "sleep", "workload": "fashion-mnist-mlp", "epochs": 3, "steps_per_epoch": 5,
                     "synthetic": True}, "template")
    run = JobRun(job=job, attempt=1, device_id="sim1",
                 executor=LocalExecutor(LocalBackend(), install_runner_code(workdir / "runner-code")),
                 job_dir=workdir / "template-job", dataset_root=workdir,
                 fingerprint=lambda libs: machine_fingerprint(libs, []), on_progress=lambda p: None)
    outcome = run.run()
    if outcome.result is None:
        raise RuntimeError(f"template job failed: {outcome}")
    return outcome.result


def bench_ingestion(broker: Broker, workdir: Path, events: int, batch: int, result: Any) -> dict[str, Any]:
    import threading

    from edgebench.common.mqtt import BrokerSettings, MqttClient
    from edgebench.controller.config import ControllerConfig
    from edgebench.controller.fleet import FleetClient
    from edgebench.controller.store import ResultStore
    from edgebench.schemas import Envelope, JobEvent, JobState, topics
    from edgebench.schemas.envelope import encode

    fleet = f"ing{uuid.uuid4().hex[:8]}"
    cfg = ControllerConfig(broker_url=broker.url, fleet=fleet,
                           store_url=f"sqlite:///{workdir / f'ingest-{batch}.db'}")
    store = ResultStore(cfg.store_url)
    with FleetClient(cfg, store, collector=True):
        pass  # creates the collector's persistent session: from now on the broker keeps its events

    acked = threading.Semaphore(0)
    sim = MqttClient(BrokerSettings.from_url(broker.url), f"sim-{fleet}", on_publish_ack=lambda mid: acked.release(),
                     max_inflight=1000)
    sim.connect()
    now = datetime.now(timezone.utc)
    topic = topics.events(fleet, "sim1")
    payload_bytes = 0
    try:
        for i in range(events):
            job_id = f"ing-{i:06d}"
            res = result.model_copy(update={"job_id": job_id, "device_id": "sim1",
                                            "job": result.job.model_copy(update={"job_id": job_id})})
            ev = JobEvent(job_id=job_id, device_id="sim1", seq=2, state=JobState.SUCCEEDED, at=now, result=res)
            payload = encode(Envelope.of(sender="sim1", body=ev))
            payload_bytes += len(payload)
            sim.publish(topic, payload)
        for _ in range(events):
            if not acked.acquire(timeout=60):
                raise RuntimeError("the broker did not acknowledge every event")
    finally:
        sim.close()

    t0 = time.perf_counter()
    with FleetClient(cfg, store, collector=True) as fc:
        fc.BATCH = batch
        deadline = time.monotonic() + 600
        while store.count("results") < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {store.count('results')} of {events} results stored")
            fc.pump(0.2)
    took_s = time.perf_counter() - t0
    return {"events": events, "batch": batch, "seconds": took_s, "results_per_s": events / took_s,
            "event_bytes_mean": payload_bytes / events}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100, help="jobs for the latency scenario")
    ap.add_argument("--events", type=int, default=5000, help="SUCCEEDED events for the ingestion scenario")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--no-broker-nodelay", action="store_true",
                    help="leave Nagle's algorithm on in Mosquitto (its default: set_tcp_nodelay false)")
    args = ap.parse_args()

    report: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="edgebench-cp-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir, nodelay=not args.no_broker_nodelay)
        report["broker_tcp_nodelay"] = not args.no_broker_nodelay
        try:
            report["latency"] = bench_latency(broker, workdir, args.jobs)
            result = real_result(workdir)
            report["ingestion"] = [bench_ingestion(broker, workdir, args.events, batch, result)
                                   for batch in (500, 1)]
        finally:
            broker.stop()

    m = report["machine"]
    print(f"\nedgebench control plane, {m['date']}: {m['cpu_model']}, {m['cpus']} CPUs, "
          f"Python {m['python']}, load {m['load_avg_1m']:.1f}; Mosquitto on loopback, "
          f"set_tcp_nodelay {'true' if report['broker_tcp_nodelay'] else 'false'}")
    lat = report["latency"]
    print(f"\nlatency over {lat['jobs']} jobs (controller clock, from dispatch()):")
    print(f"  {'event':<12} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'max ms':>8}")
    for state in ("QUEUED", "IN_PROGRESS", "SUCCEEDED"):
        s = lat[state]
        print(f"  {state:<12} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} {s['mean_ms']:8.1f} {s['max_ms']:8.1f}")
    print("\ncollector ingestion (SUCCEEDED events with full results, queued while it was away):")
    print(f"  {'batch':>6} {'events':>7} {'seconds':>8} {'results/s':>10} {'bytes/event':>12}")
    for r in report["ingestion"]:
        print(f"  {r['batch']:>6} {r['events']:>7} {r['seconds']:8.2f} {r['results_per_s']:10.0f} "
              f"{r['event_bytes_mean']:12.0f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
