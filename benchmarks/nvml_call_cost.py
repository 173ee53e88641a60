#!/usr/bin/env python3
"""What each NVML call and each psutil read costs the sampling thread, on this machine.

Run on a GPU machine (nvidia-ml-py, psutil; torch with CUDA for the load)::

    python3 benchmarks/nvml_call_cost.py --out OUT [--gpu 0] [--reps 200] [--wheels DIR]

For every call the sampler could make it runs ``--reps`` calls back to back
on one GPU, while a child process keeps that GPU busy with bf16 matmuls (so
the driver answers as it does during a job), and records per call: wall
time, CPU time of the calling thread, and that CPU time split into user and
system (getrusage RUSAGE_THREAD). Then it times the sampler's whole tick
(:meth:`NvmlTelemetry.read_raw` + :class:`ProcessTreeMeter`) under each read
plan of :mod:`agent.telemetry.nvml`. Results: OUT/nvml_call_cost.json and a
table on stdout. This is the evidence behind which fields the sampler reads
on every tick (docs/TELEMETRY.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

LOAD = r"""
import sys, time, torch
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(8):
        x @ x
    torch.cuda.synchronize()
"""


def setup_path(wheels: str | None) -> None:
    sys.path.insert(0, str(REPO))
    folder = wheels or os.environ.get("EDGEBENCH_WHEELS")
    if folder:
        sys.path.insert(0, folder)


def _rusage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime, ru.ru_stime


def measure(func: Callable[[], Any], reps: int) -> dict[str, Any]:
    """Per-call wall and thread CPU time over ``reps`` back-to-back calls (after one untimed call)."""
    error = None
    try:
        func()
    except Exception as exc:  # unsupported on this GPU: reported, not fatal
        error = f"{type(exc).__name__}: {exc}"
        return {"error": error}
    walls: list[float] = []
    u0, s0 = _rusage()
    c0 = time.thread_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        func()
        walls.append(time.perf_counter() - t0)
    cpu = time.thread_time() - c0
    u1, s1 = _rusage()
    return {
        "reps": reps,
        "wall_ms_median": 1000 * statistics.median(walls),
        "wall_ms_p90": 1000 * sorted(walls)[int(0.9 * (len(walls) - 1))],
        "cpu_ms_per_call": 1000 * cpu / reps,
        "user_ms_per_call": 1000 * (u1 - u0) / reps,
        "sys_ms_per_call": 1000 * (s1 - s0) / reps,
    }


def nvml_calls(nvml: Any, handle: Any) -> dict[str, Callable[[], Any]]:
    calls: dict[str, Callable[[], Any]] = {
        "utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        "memory_v1": lambda: nvml.nvmlDeviceGetMemoryInfo(handle),
        "memory_v2": lambda: nvml.nvmlDeviceGetMemoryInfo(handle, nvml.nvmlMemory_v2),
        "sm_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        "mem_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        "power_usage": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "total_energy": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "temperature": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        "clock_event_reasons": lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
        "compute_processes": lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle),
        "graphics_processes": lambda: nvml.nvmlDeviceGetGraphicsRunningProcesses(handle),
        "field_power_instant": lambda: nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT]),
        "field_energy": lambda: nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]),
        "field_power+energy": lambda: nvml.nvmlDeviceGetFieldValues(
            handle, [nvml.NVML_FI_DEV_POWER_INSTANT, nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
        ),
        "samples_gpu_util": lambda: nvml.nvmlDeviceGetSamples(handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, 0),
        "samples_power": lambda: nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, 0),
        "samples_sm_clock": lambda: nvml.nvmlDeviceGetSamples(handle, nvml.NVML_PROCESSOR_CLK_SAMPLES, 0),
    }
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=100, help="whole ticks timed per read plan")
    ap.add_argument("--no-load", action="store_true", help="leave the GPU idle")
    ap.add_argument("--wheels")
    args = ap.parse_args()
    setup_path(args.wheels)
    import pynvml as nvml

    from edgebench.agent.telemetry.nvml import READ_PLANS, NvmlTelemetry
    from edgebench.agent.telemetry.process import ProcessTreeMeter

    args.out.mkdir(parents=True, exist_ok=True)
    load = None
    if not args.no_load:
        env = dict(os.environ, CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=str(args.gpu))
        load = subprocess.Popen([sys.executable, "-c", LOAD, "600"], env=env)
        time.sleep(8)  # CUDA context up, clocks settled
    result: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "gpu_load": load is not None,
    }
    try:
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(args.gpu)
        result["gpu"] = nvml.nvmlDeviceGetName(handle)
        result["driver"] = nvml.nvmlSystemGetDriverVersion()
        calls = {name: measure(func, args.reps) for name, func in nvml_calls(nvml, handle).items()}
        calls["psutil_pid_exists"] = measure(lambda: __import__("psutil").pid_exists(os.getpid()), args.reps)
        root = load.pid if load is not None else os.getpid()
        meter = ProcessTreeMeter(root)
        t = [time.time()]

        def meter_tick() -> None:
            t[0] += 0.1
            meter.sample(t[0])

        calls["process_tree_tick"] = measure(meter_tick, args.reps)
        result["calls"] = calls
        nvml.nvmlShutdown()

        plans: dict[str, Any] = {}
        pids = frozenset([root])
        for plan in READ_PLANS:
            tel = NvmlTelemetry(plan=plan)

            def one_read(tel: NvmlTelemetry = tel) -> None:
                tel.convert(tel.read_raw([args.gpu]), pids)

            try:
                plans[plan] = measure(one_read, args.ticks)
                # spaced at 10 Hz as the sampler runs, so cached fields expire as they do in a job
                c0 = time.thread_time()
                w0 = time.monotonic()
                for _ in range(args.ticks):
                    tel.convert(tel.read_raw([args.gpu]), pids)
                    time.sleep(0.1)
                cpu = time.thread_time() - c0
                wall = time.monotonic() - w0
                plans[plan]["at_10hz_cpu_ms_per_tick"] = 1000 * cpu / args.ticks
                plans[plan]["at_10hz_pct_of_core"] = 100 * cpu / wall
            finally:
                tel.close()
        result["read_plans"] = plans
    finally:
        if load is not None:
            load.kill()
            load.wait()

    print(
        f"{result.get('gpu')} driver {result.get('driver')} on {result['host']} ({result['kernel']}), "
        f"GPU load {'on' if result['gpu_load'] else 'off'}"
    )
    print(f"{'call':24s} {'cpu ms':>8s} {'user':>7s} {'sys':>7s} {'wall p50':>9s} {'wall p90':>9s}")
    for name, row in result["calls"].items():
        if "error" in row:
            print(f"{name:24s} {row['error']}")
            continue
        print(
            f"{name:24s} {row['cpu_ms_per_call']:8.3f} {row['user_ms_per_call']:7.3f} {row['sys_ms_per_call']:7.3f} "
            f"{row['wall_ms_median']:9.3f} {row['wall_ms_p90']:9.3f}"
        )
    print("\nwhole NVML read per tick (one GPU), by read plan:")
    for plan, row in result["read_plans"].items():
        print(
            f"  {plan:10s} back-to-back {row['cpu_ms_per_call']:.3f} ms CPU; spaced at 10 Hz "
            f"{row['at_10hz_cpu_ms_per_tick']:.3f} ms CPU/tick = {row['at_10hz_pct_of_core']:.2f} % of a core"
        )
    out = args.out / "nvml_call_cost.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
