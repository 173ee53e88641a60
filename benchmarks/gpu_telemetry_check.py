#!/usr/bin/env python3
"""Check edgebench's telemetry against nvidia-smi on a real GPU, record a trace, measure its cost.

Run on a GPU machine (torch with CUDA for the workload, nvidia-ml-py, psutil)::

    python3 benchmarks/gpu_telemetry_check.py --out OUT [--wheels DIR]

1. Records a real NVML trace (JSON lines, replayable in CI) of a ~20 s job: a
   child process that warms up, then inside its measured window runs a bf16
   matmul loop at full load and then at a 50 % duty cycle, then idles.
2. Runs ``nvidia-smi --query-gpu=... -lms 100`` over the same job and compares
   its means inside the window with the sampler's summary (relative differences).
3. Measures the sampler's own CPU cost at 10 Hz (CPU time of the sampling
   thread / wall time, as % of one core; target <= 1 %) over a second job.

With ``--telemetry none`` (any machine) it skips 1-2 and measures the cost of
the psutil-only sampler over a CPU busy loop. Results go to OUT/gpu_telemetry_check.json.
pydantic must be importable: ``--wheels DIR`` (or EDGEBENCH_WHEELS) puts a
folder of unpacked wheels on sys.path first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

TORCH_WORKLOAD = r"""
import json, sys, time
import torch
warm_s, full_s, duty_s, tail_s = (float(a) for a in sys.argv[1:5])
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

def burst():
    for _ in range(4):
        x @ y
    torch.cuda.synchronize()

def run(seconds, duty=1.0):
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        burst()
        n += 4
        if duty < 1.0:
            time.sleep((time.perf_counter() - t0) * (1.0 - duty) / duty)
    return n

run(warm_s)
print(json.dumps({"edge": "begin", "t": time.time()}), flush=True)
n = run(full_s) + run(duty_s, 0.5)
print(json.dumps({"edge": "end", "t": time.time(), "matmuls": n}), flush=True)
time.sleep(tail_s)
"""

CPU_WORKLOAD = r"""
import json, sys, time
warm_s, full_s, duty_s, tail_s = (float(a) for a in sys.argv[1:5])
def run(seconds):
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n
run(warm_s)
print(json.dumps({"edge": "begin", "t": time.time()}), flush=True)
n = run(full_s + duty_s)
print(json.dumps({"edge": "end", "t": time.time(), "loops": n}), flush=True)
time.sleep(tail_s)
"""

SMI_FIELDS = ("timestamp", "utilization.gpu", "utilization.memory", "memory.used", "power.draw", "clocks.sm")


def setup_path(wheels: str | None) -> None:
    for extra in (wheels, os.environ.get("EDGEBENCH_WHEELS")):
        if extra and extra not in sys.path:
            sys.path.insert(0, extra)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        import pydantic  # noqa: F401
    except ImportError:
        sys.exit("pydantic is not importable: pass --wheels DIR (a folder with pydantic, pydantic-core, ...)")


def torch_cuda_ok() -> bool:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def start_workload(kind: str, warm_s: float, full_s: float, duty_s: float, tail_s: float) -> subprocess.Popen[str]:
    code = TORCH_WORKLOAD if kind == "torch" else CPU_WORKLOAD
    args = [str(warm_s), str(full_s), str(duty_s), str(tail_s)]
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


def feed_windows(proc: subprocess.Popen[str], sampler: Any, facts: dict[str, Any]) -> threading.Thread:
    """Forward the workload's window markers to the sampler, as the agent does with the runner's."""

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
                edge, t = msg["edge"], float(msg["t"])
            except (ValueError, KeyError, TypeError):
                continue  # stray output of a library, not a marker
            sampler.mark_window(edge, t)
            facts[edge] = msg

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def start_smi(gpu: int, path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        "nvidia-smi",
        f"--query-gpu={','.join(SMI_FIELDS)}",
        "--format=csv,noheader,nounits",
        "-lms",
        "100",
        "-i",
        str(gpu),
    ]
    return subprocess.Popen(cmd, stdout=path.open("wb"), stderr=subprocess.DEVNULL)


def read_smi(path: Path) -> list[dict[str, float | None]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(SMI_FIELDS):
            continue
        try:
            # nvidia-smi prints local time, e.g. 2026/11/28 15:20:28.123
            t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        row: dict[str, float | None] = {"t": t}
        for name, value in zip(SMI_FIELDS[1:], parts[1:], strict=True):
            try:
                row[name] = float(value)
            except ValueError:  # "[N/A]", "[Not Supported]"
                row[name] = None
        rows.append(row)
    return rows


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def rel_diff(ours: float | None, ref: float | None) -> float | None:
    if ours is None or ref is None:
        return None
    if ref == 0:
        return 0.0 if ours == 0 else None
    return (ours - ref) / ref


def compare_with_smi(report: Any, smi_rows: list[dict[str, float | None]], gpu: int) -> dict[str, Any]:
    from edgebench.agent.telemetry.summary import in_windows

    windows = list(report.windows)
    smi_in = [r for r in smi_rows if in_windows(float(r["t"] or 0), windows)]
    ours_in = [g for s in report.snapshots if in_windows(s.t, windows) for g in s.gpus if g.index == gpu]
    pairs = {
        "utilization.gpu [%]": ([g.util_pct for g in ours_in], "utilization.gpu"),
        "utilization.memory [%]": ([g.mem_util_pct for g in ours_in], "utilization.memory"),
        "memory.used [MiB]": (
            [None if g.mem_used_bytes is None else g.mem_used_bytes / 2**20 for g in ours_in],
            "memory.used",
        ),
        "power.draw [W]": ([g.power_w for g in ours_in], "power.draw"),
        "clocks.sm [MHz]": ([g.sm_clock_mhz for g in ours_in], "clocks.sm"),
    }
    table = {}
    for label, (ours, smi_key) in pairs.items():
        ours_mean = mean(list(ours))
        smi_mean = mean([r[smi_key] for r in smi_in])
        table[label] = {"edgebench": ours_mean, "nvidia_smi": smi_mean, "rel_diff": rel_diff(ours_mean, smi_mean)}
    window_s = sum(e - b for b, e in windows)
    smi_power = table["power.draw [W]"]["nvidia_smi"]
    summary_gpu = next((g for g in report.summary.gpus if g.index == gpu), None) if report.summary else None
    energy = summary_gpu.energy_j if summary_gpu else None
    table["energy in window [J]"] = {
        "edgebench": energy,
        "nvidia_smi": None if smi_power is None else smi_power * window_s,  # mean power x window
        "rel_diff": rel_diff(energy, None if smi_power is None else smi_power * window_s),
        "edgebench_method": summary_gpu.energy_source if summary_gpu else None,
    }
    return {"samples": {"edgebench": len(ours_in), "nvidia_smi": len(smi_in)}, "window_s": window_s, "table": table}


def print_table(cmp: dict[str, Any]) -> None:
    print(
        f"\nInside the measured window ({cmp['window_s']:.2f} s; samples edgebench "
        f"{cmp['samples']['edgebench']}, nvidia-smi {cmp['samples']['nvidia_smi']}):"
    )
    print(f"  {'metric':26s} {'edgebench':>12s} {'nvidia-smi':>12s} {'rel diff':>9s}")
    for label, row in cmp["table"].items():

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        rd = row["rel_diff"]
        print(
            f"  {label:26s} {fmt(row['edgebench']):>12s} {fmt(row['nvidia_smi']):>12s} "
            f"{'n/a' if rd is None else f'{100 * rd:+.1f}%':>9s}"
        )


def run_job(
    telemetry: Any,
    kind: str,
    durations: tuple[float, float, float, float],
    interval_s: float,
    trace: Path | None,
    smi_csv: Path | None,
    gpu: int,
) -> tuple[Any, dict[str, Any]]:
    from edgebench.agent.telemetry import Sampler

    facts: dict[str, Any] = {}
    smi = start_smi(gpu, smi_csv) if smi_csv is not None else None
    try:
        proc = start_workload(kind, *durations)
        # the GPU the job runs on, as the agent samples it (not every GPU of the box)
        indices = [gpu] if telemetry.source == "nvml" else None
        sampler = Sampler(
            telemetry, interval_s=interval_s, gpu_indices=indices, trace_path=trace, job_id="telemetry-check"
        )
        sampler.start(proc.pid)
        pump = feed_windows(proc, sampler, facts)
        proc.wait()
        pump.join(timeout=5)
        report = sampler.stop(window_images=None, measured_epochs=1, memory_policy="default")
    finally:
        if smi is not None:
            smi.terminate()
            smi.wait()
    facts["returncode"] = proc.returncode
    return report, facts


def _mean(stat: Any) -> str:
    return "n/a" if stat is None else f"{stat.mean:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--wheels", help="folder of unpacked wheels (pydantic...) to put on sys.path")
    ap.add_argument("--telemetry", default="nvml", choices=["nvml", "auto", "none"])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--trace-name", default="nvml_trace_h200.jsonl")
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--window-s", type=float, default=14.0, help="full load for half, 50%% duty for half")
    ap.add_argument("--tail-s", type=float, default=3.0)
    ap.add_argument("--cost-seconds", type=float, default=30.0)
    ap.add_argument("--skip-record", action="store_true", help="only measure the sampler's cost")
    ap.add_argument(
        "--workload",
        default="auto",
        choices=["auto", "torch", "cpu"],
        help="the job sampled: a CUDA matmul loop (torch) or a CPU loop; auto: torch where NVML works",
    )
    ap.add_argument("--plan", default=None, help="NVML read plan for the recorded job (default: the agent's)")
    ap.add_argument(
        "--cost-plans", default=None, help="comma-separated read plans to measure the cost of (default: every plan)"
    )
    args = ap.parse_args()
    setup_path(args.wheels)
    from edgebench.agent.telemetry import create_telemetry
    from edgebench.agent.telemetry.nvml import DEFAULT_READ_PLAN, READ_PLANS

    args.out.mkdir(parents=True, exist_ok=True)
    plan = args.plan or DEFAULT_READ_PLAN
    cost_plans = args.cost_plans.split(",") if args.cost_plans else list(READ_PLANS)
    telemetry = create_telemetry(args.telemetry, nvml_read_plan=plan)
    if args.workload == "auto":
        kind = "torch" if telemetry.source == "nvml" and torch_cuda_ok() else "cpu"
    else:
        kind = args.workload
    result: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "telemetry": telemetry.source,
        "read_plan": plan if telemetry.source == "nvml" else None,
        "workload": kind,
        "inventory": [g.model_dump(mode="json") for g in telemetry.inventory()],
    }
    print(f"telemetry={telemetry.source} workload={kind} gpus={[g.name for g in telemetry.inventory()]}")
    half = args.window_s / 2

    if telemetry.source == "nvml" and not args.skip_record:
        trace = args.out / args.trace_name
        smi_csv = args.out / "nvidia_smi.csv" if shutil.which("nvidia-smi") else None
        report, facts = run_job(
            telemetry, kind, (args.warmup_s, half, half, args.tail_s), 0.1, trace, smi_csv, args.gpu
        )
        s = report.summary
        result["record"] = {
            "trace": str(trace),
            "trace_bytes": trace.stat().st_size,
            "workload": facts,
            "summary": None if s is None else s.model_dump(mode="json"),
            "sampler": asdict(report.stats) | {"cpu_pct_of_core": report.stats.cpu_pct_of_core},
        }
        print(
            f"\ntrace: {trace} ({trace.stat().st_size} bytes, {report.stats.ticks} ticks, "
            f"{report.stats.late_ticks} late, {report.stats.errors} errors)"
        )
        if s is not None:
            g = next((x for x in s.gpus if x.index == args.gpu), None)
            if g is not None:
                print(
                    f"GPU {g.index} {g.name}: util mean {_mean(g.util_pct)} %, SM clock mean "
                    f"{_mean(g.sm_clock_mhz)} MHz, power mean {_mean(g.power_w)} W, energy {g.energy_j} J "
                    f"({g.energy_source}), runner GPU memory peak {g.process_mem_bytes_peak} B, "
                    f"clock event reasons {g.clock_event_fractions}"
                )
        if smi_csv is not None:
            cmp = compare_with_smi(report, read_smi(smi_csv), args.gpu)
            result["nvidia_smi_comparison"] = cmp
            print_table(cmp)
        else:
            print("nvidia-smi not found: comparison skipped")

    # The sampler's own cost at 10 Hz, over a second job per read plan.
    result["cost_by_plan"] = {}
    for cost_plan in cost_plans if telemetry.source == "nvml" else [None]:
        tel = telemetry if cost_plan in (None, plan) else create_telemetry(args.telemetry, nvml_read_plan=cost_plan)
        cost_report, _ = run_job(
            tel, kind, (1.0, args.cost_seconds / 2, args.cost_seconds / 2, 0.5), 0.1, None, None, args.gpu
        )
        if tel is not telemetry:
            tel.close()
        st = cost_report.stats
        cost = {
            "read_plan": cost_plan,
            "interval_s": 0.1,
            "wall_s": st.wall_s,
            "ticks": st.ticks,
            "late_ticks": st.late_ticks,
            "thread_cpu_s": st.thread_cpu_s,
            "cpu_pct_of_core": st.cpu_pct_of_core,
            "per_tick_ms": 1000.0 * st.thread_cpu_s / max(1, st.ticks),
            "target_pct": 1.0,
            "ok": st.cpu_pct_of_core <= 1.0,
        }
        result["cost_by_plan"][cost_plan or "none"] = cost
        if cost_plan in (None, plan):
            result["cost"] = cost
        verdict = "OK" if st.cpu_pct_of_core <= 1.0 else "OVER"
        print(
            f"\nsampler cost at 10 Hz ({telemetry.source}{'' if cost_plan is None else ', plan ' + cost_plan}): "
            f"{st.cpu_pct_of_core:.3f} % of one core "
            f"({1000 * st.thread_cpu_s / max(1, st.ticks):.3f} ms CPU per tick, {st.ticks} ticks over "
            f"{st.wall_s:.1f} s, {st.late_ticks} late) -> {verdict} (target <= 1 %)"
        )
    telemetry.close()
    out = args.out / "gpu_telemetry_check.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
