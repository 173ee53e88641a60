"""Harness fidelity: img/s measured through edgebench (controller → broker →
agent → runner, with the telemetry sampler on) against the same training loop
run bare (benchmarks/bare_loop.py), side by side, alternating A/B order.

    python benchmarks/harness_overhead.py --backend keras-jax --workload fashion-mnist-mlp \
        --batch-size 32 --samples 60000 --epochs 4 --rounds 3 --out overhead.json

Target: ratio (median agent / median bare) >= 0.98. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgebench.common.broker import EmbeddedBroker  # noqa: E402
from edgebench.controller.config import ControllerConfig  # noqa: E402
from edgebench.controller.fleet import Dispatched, FleetClient  # noqa: E402
from edgebench.controller.plan import build_job  # noqa: E402
from edgebench.controller.store import ResultStore  # noqa: E402
from edgebench.schemas import JobSpec  # noqa: E402


def wait_online(fleet: FleetClient, device_id: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fleet.pump(0.2)
        s = fleet.statuses.get(device_id)
        if s is not None and s.online:
            return
    raise SystemExit("agent did not come online")


def runner_result(spec_path: Path, env: dict[str, str], tmp: Path,
                  stderr_to: Path | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """`python -m runner` on the job file, as the agent starts it but alone; its result message
    (its stderr kept in ``stderr_to`` when given; SystemExit naming the limit past ``timeout_s``)."""
    try:
        out = subprocess.run([sys.executable, "-m", "edgebench.runner", "--job", str(spec_path),
                              "--dataset-root", str(tmp)],
                             capture_output=True, text=True, env=env, cwd=str(REPO), check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        if stderr_to is not None:
            err = exc.stderr or b""
            stderr_to.write_text(err.decode("utf-8", "replace") if isinstance(err, bytes) else err)
        raise SystemExit(f"the runner did not finish within {timeout_s:.0f} s") from None
    if stderr_to is not None:
        stderr_to.write_text(out.stderr)
    for line in out.stdout.splitlines():
        msg: dict[str, Any] = json.loads(line)
        if msg.get("type") == "result":
            return msg
    raise SystemExit(f"the runner gave no result: {out.stdout[-1000:]} {out.stderr[-2000:]}")


def run_runner(spec_path: Path, env: dict[str, str], tmp: Path) -> float:
    """The runner alone on the job file: its window img/s."""
    return float(runner_result(spec_path, env, tmp)["runs"][0]["throughput"]["window_img_per_s"])


ARMS = ("agent", "runner", "bare")


def round_order(rnd: int, with_runner: bool) -> tuple[str, ...]:
    """The arms of round `rnd`, alternating A/B so that neither always runs first (warm caches, thermals)."""
    if with_runner:
        return ("agent", "runner", "bare") if rnd % 2 == 0 else ("bare", "runner", "agent")
    return ("agent", "bare") if rnd % 2 == 0 else ("bare", "agent")


def round_jobs(case: dict[str, Any], rnd: int) -> dict[str, JobSpec]:
    """One job per round, built once: every arm runs it, differing only in job_id (the agent's store key)."""
    base = build_job(case, f"overhead-{rnd}")
    return {arm: base.model_copy(update={"job_id": f"overhead-{rnd}-{arm}"}) for arm in ARMS}


def write_job_file(job: JobSpec, tmp: Path) -> Path:
    """JOB.json as the agent writes it for its runner: the wire form of the spec."""
    path = tmp / f"{job.job_id}.json"
    path.write_text(json.dumps(job.model_dump(mode="json")))
    return path


def run_bare(spec_path: Path, env: dict[str, str], stderr_to: Path | None = None) -> dict[str, Any]:
    """benchmarks/bare_loop.py on the job file: its JSON line (its stderr kept in ``stderr_to`` when given)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bare_loop.py"), str(spec_path)],
                         capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
    if stderr_to is not None:
        stderr_to.write_text(out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"the bare loop failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def runner_env() -> dict[str, str]:
    """This environment with the repository on PYTHONPATH (what every arm runs under)."""
    return {**os.environ, "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}{os.pathsep}{REPO}"}


def bare_env(env: dict[str, str], gpus: int, gpu_index: int | None) -> dict[str, str]:
    """The bare arms see what the agent gives its runner: no GPU for a CPU job, else the pinned one."""
    out = dict(env)
    if gpus == 0:
        out.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    elif gpu_index is not None:
        out.update(CUDA_VISIBLE_DEVICES=str(gpu_index), CUDA_DEVICE_ORDER="PCI_BUS_ID")
    return out


class AgentFleet:
    """An embedded broker (or the one given), one real agent ``bench`` and a controller's FleetClient.

    ``run(job)`` dispatches a job through the whole path (controller -> broker -> agent -> runner, with the
    agent's telemetry sampler on) and returns its img/s as the store recorded it.
    """

    def __init__(self, tmp: Path, backends: list[str], gpu_index: int | None = None,
                 broker_url: str | None = None, telemetry: str | None = None) -> None:
        """telemetry: the agent's telemetry source (agent config ``telemetry``; None: its default, auto)."""
        self.tmp, self.backends, self.gpu_index, self.broker_url = tmp, backends, gpu_index, broker_url
        self.telemetry = telemetry
        self.broker: EmbeddedBroker | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.cpu: dict[str, float] = {}

    def __enter__(self) -> AgentFleet:
        tmp = self.tmp
        self.broker = None if self.broker_url else EmbeddedBroker().start()
        url = self.broker_url or (self.broker.url if self.broker else "")
        agent_yaml: dict[str, object] = {"device_id": "bench"}
        if self.telemetry:
            agent_yaml["telemetry"] = self.telemetry
        if self.gpu_index is not None:
            agent_yaml["gpu_indices"] = [self.gpu_index]
        if os.environ.get("PYTHONPATH"):
            # The executor hands a runner only the backend's own PYTHONPATH: packages
            # carried on this one (wheels unpacked on a GPU machine) must be named there.
            agent_yaml["backends"] = {b: {"env": {"PYTHONPATH": os.environ["PYTHONPATH"]}} for b in self.backends}
        agent_cfg = tmp / "agent.yaml"
        agent_cfg.write_text(json.dumps(agent_yaml))  # JSON is YAML
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "edgebench.agent.cli", "run", "--config", str(agent_cfg), "--broker", url,
             "--fleet", "overhead", "--state-dir", str(tmp / "agent"), "--log-level", "WARNING"],
            stdout=(tmp / "agent.log").open("wb"), stderr=subprocess.STDOUT, env=runner_env(), cwd=str(REPO))
        cfg = ControllerConfig(broker_url=url, fleet="overhead", store_url=f"sqlite:///{tmp / 'r.db'}")
        self.store = ResultStore(cfg.store_url)
        self.fleet = FleetClient(cfg, self.store)
        self.fleet.__enter__()
        wait_online(self.fleet, "bench")
        return self

    def run(self, job: JobSpec, timeout_s: float = 3600) -> float:
        """The job through the whole path; its img/s. ``self.cpu`` then holds what the processes around the
        runner cost while it ran: CPU seconds of the agent's own threads (its runner excluded) and of this
        process (the embedded broker and the controller's client), each as a % of one core over the job."""
        import psutil

        agent = psutil.Process(self.agent.pid) if self.agent is not None else None
        a0 = agent.cpu_times() if agent is not None else None
        h0, w0 = os.times(), time.monotonic()
        self.fleet.dispatch([Dispatched("bench", job)])
        if self.fleet.wait({(job.job_id, "bench")}, timeout_s):
            raise SystemExit("agent job did not finish")
        wall_s, h1 = time.monotonic() - w0, os.times()
        self.cpu = {"wall_s": wall_s,
                    "harness_cpu_pct_of_core": 100 * (h1.user + h1.system - h0.user - h0.system) / wall_s}
        if agent is not None and a0 is not None:
            a1 = agent.cpu_times()
            self.cpu["agent_cpu_pct_of_core"] = 100 * (a1.user + a1.system - a0.user - a0.system) / wall_s
        [row] = self.store.results(job_id=job.job_id)
        if row.outcome != "OK" or not row.img_per_s:
            raise SystemExit(f"agent job failed: {row.reason}")
        return float(row.img_per_s)

    def __exit__(self, *exc: object) -> None:
        try:
            self.fleet.__exit__(None, None, None)
        finally:
            if self.agent is not None:
                self.agent.terminate()
                self.agent.wait(30)
            if self.broker:
                self.broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--input", choices=("host", "device"), help="the job's input knob (default: the backend's)")
    ap.add_argument("--min-batches", type=int, help="the job's min_batches (default: the catalogue's)")
    ap.add_argument("--gpu-index", type=int, help="pin the agent and the bare loop to this GPU (NVML index)")
    ap.add_argument("--broker", help="use this broker instead of an embedded one")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--with-runner", action="store_true",
                    help="a third arm: `python -m runner` on the same job file, no agent, broker or sampler "
                         "(tells whether an overhead comes from the agent around the runner or the runner)")
    args = ap.parse_args()

    case = {"backend": args.backend, "workload": args.workload, "batch_size": args.batch_size,
            "epochs": args.epochs, "synthetic": True, "precision": args.precision, "gpus": args.gpus,
            "steps_per_epoch": None, "timeout_s": 3600}
    if args.samples:
        case["samples"] = args.samples
    if args.input:
        case["input"] = args.input
    if args.min_batches is not None:
        case["min_batches"] = args.min_batches
    tmp = Path(tempfile.mkdtemp(prefix="overhead-"))
    env = runner_env()
    agent_rates: list[float] = []
    bare_rates: list[float] = []
    bare_epochs_only: list[float] = []  # the bare loop without the framework's between-epoch work
    runner_rates: list[float] = []
    agent_cpu: list[dict[str, float]] = []  # per agent job: the agent's and this process's CPU around the runner
    with AgentFleet(tmp, [args.backend], args.gpu_index, args.broker) as fleet:
        for rnd in range(args.rounds):
            jobs = round_jobs(case, rnd)
            for which in round_order(rnd, args.with_runner):
                job = jobs[which]
                if which == "agent":
                    agent_rates.append(fleet.run(job))
                    agent_cpu.append(fleet.cpu)
                else:
                    spec_path = write_job_file(job, tmp)
                    local_env = bare_env(env, args.gpus, args.gpu_index)
                    if which == "runner":
                        runner_rates.append(run_runner(spec_path, local_env, tmp))
                    else:
                        bare = run_bare(spec_path, local_env)
                        bare_rates.append(bare["window_img_per_s"])
                        bare_epochs_only.append(bare["epochs_only_img_per_s"])
                last = {"agent": agent_rates, "bare": bare_rates, "runner": runner_rates}[which][-1]
                extra = ""
                if which == "agent":
                    extra = (f"  (agent's own threads {fleet.cpu.get('agent_cpu_pct_of_core', float('nan')):.1f} %,"
                             f" broker + controller {fleet.cpu['harness_cpu_pct_of_core']:.1f} % of one core)")
                print(f"round {rnd + 1} {which:5s} {last:10.1f} img/s{extra}", flush=True)
    ratio = statistics.median(agent_rates) / statistics.median(bare_rates)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.node(), "case": case, "rounds": args.rounds,
        "agent_img_per_s": agent_rates, "bare_img_per_s": bare_rates,
        "bare_epochs_only_img_per_s": bare_epochs_only,
        "runner_direct_img_per_s": runner_rates or None,
        "agent_arm_cpu": agent_cpu,
        "agent_median": statistics.median(agent_rates), "bare_median": statistics.median(bare_rates),
        "ratio": ratio, "target": 0.98, "pass": ratio >= 0.98,
        "runner_ratio": statistics.median(runner_rates) / statistics.median(bare_rates) if runner_rates else None,
        "load_avg": os.getloadavg(),
    }
    print(f"{args.backend} {args.workload} bs{args.batch_size} {args.precision}: agent "
          f"{result['agent_median']:.1f} / bare {result['bare_median']:.1f} img/s = ratio {ratio:.3f} "
          f"({'PASS' if ratio >= 0.98 else 'below 0.98'})"
          + (f"; runner alone {statistics.median(runner_rates):.1f} = {result['runner_ratio']:.3f}"
             if runner_rates else ""))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
