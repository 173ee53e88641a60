"""NVML read plans: which calls happen on which tick, and that "lean" loses nothing measured.

The NVML answers come from a trace recorded on an H200 (recorded_nvml.py); the
decisions under test are NvmlTelemetry's and the Sampler's own.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgebench.agent.telemetry import NvmlTelemetry, Sampler, summarize
from edgebench.agent.telemetry.nvml import COUNTER_PERIOD_S, READ_PLANS, SLOW_FIELDS_S
from edgebench.agent.telemetry.snapshot import Snapshot

from .conftest import FIXTURES
from .recorded_nvml import RecordedNvml

TRACE = FIXTURES / "nvml_trace_h200.jsonl"


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(plan: str, fresh_at_edges: bool) -> tuple[list[Snapshot], list[tuple[float, float]], RecordedNvml]:
    """Tick NvmlTelemetry(plan) at every recorded tick's time, plus a fresh read right after each edge."""
    clock = StepClock()
    fake = RecordedNvml(TRACE, clock)
    windows = [(b - fake.t0, e - fake.t0) for b, e in fake.trace.windows]
    edges = sorted(t for w in windows for t in w)
    times = [(t, False) for t in fake.ts]
    if fresh_at_edges:
        times += [(t + 0.004, True) for t in edges]  # the sampler wakes a few ms after a marker
    tel = NvmlTelemetry(plan, nvml=fake, clock=clock)
    snaps = []
    for t, fresh in sorted(times):
        clock.now = t
        snaps.append(Snapshot(t=t, gpus=tel.convert(tel.read_raw(fresh=fresh)), process=None))
    tel.close()
    return snaps, windows, fake


def test_unknown_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown NVML read plan 'fast'"):
        NvmlTelemetry("fast", nvml=RecordedNvml(TRACE, StepClock()))


def test_full_plan_reads_everything_every_tick_and_slow_fields_once_a_second() -> None:
    snaps, _, fake = replay("full", fresh_at_edges=False)
    ticks = len(fake.ts)
    for name in ("utilization", "memory", "sm_clock", "power", "energy"):
        assert fake.calls[name] == ticks, name
    seconds = fake.duration_s
    for name in ("temperature", "reasons", "processes", "mem_clock"):
        assert fake.calls[name] <= seconds / SLOW_FIELDS_S + 2, name
    assert all(s.gpus[0].energy_mj is not None for s in snaps)


def test_lean_plan_reads_the_energy_counter_at_edges_and_every_period_only() -> None:
    snaps, windows, fake = replay("lean", fresh_at_edges=True)
    ticks = len(fake.ts)
    for name in READ_PLANS["lean"]:
        assert fake.calls[name] == ticks + 2 * len(windows), name
    expected = fake.duration_s / COUNTER_PERIOD_S + 1 + 2 * len(windows)
    assert fake.calls["energy"] <= expected + 1
    assert fake.calls["energy"] < ticks / 10
    # a counter not read is None on that tick, never a stale repeat
    read = [s for s in snaps if s.gpus[0].energy_mj is not None]
    assert len(read) == fake.calls["energy"]
    for b, e in windows:
        assert any(0 < s.t - b < 0.01 for s in read) and any(0 < s.t - e < 0.01 for s in read)


def test_lean_and_full_give_the_same_summary() -> None:
    full_snaps, windows, fake = replay("full", fresh_at_edges=True)
    lean_snaps, _, _ = replay("lean", fresh_at_edges=True)
    full = summarize(full_snaps, windows, source="nvml", interval_s=0.1, window_images=1000)
    lean = summarize(lean_snaps, windows, source="nvml", interval_s=0.1, window_images=1000)
    assert full is not None and lean is not None
    f, g = full.gpus[0], lean.gpus[0]
    assert g.energy_source == "counter"
    # The true energy in the window: the counter itself at the edges.
    truth_j = sum(fake.energy_mj_at(e) - fake.energy_mj_at(b) for b, e in windows) / 1000.0
    assert g.energy_j == pytest.approx(truth_j, rel=0.005)
    assert f.energy_j == pytest.approx(truth_j, rel=0.005)
    assert lean.img_per_j == pytest.approx(full.img_per_j, rel=0.005)
    # every gauge is read every tick in both plans: identical statistics
    assert g.util_pct == f.util_pct and g.power_w == f.power_w and g.sm_clock_mhz == f.sm_clock_mhz
    assert g.mem_used_bytes_peak == f.mem_used_bytes_peak


def test_lean_without_edge_reads_falls_back_honestly() -> None:
    # Without the edge reads the periodic counter reads do not bracket this
    # window's end (the trace stops 3 s after it, the period is 5 s): the
    # summary says it integrated power instead, and is still close.
    snaps, windows, fake = replay("lean", fresh_at_edges=False)
    s = summarize(snaps, windows, source="nvml", interval_s=0.1)
    assert s is not None and s.gpus[0].energy_source == "power_integral"
    truth_j = sum(fake.energy_mj_at(e) - fake.energy_mj_at(b) for b, e in windows) / 1000.0
    assert s.gpus[0].energy_j == pytest.approx(truth_j, rel=0.05)


def test_sampler_reads_fresh_right_after_each_window_marker(tmp_path: Path) -> None:
    start = time.monotonic()
    fake = RecordedNvml(TRACE, lambda: time.monotonic() - start)
    tel = NvmlTelemetry("lean", nvml=fake)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        sampler = Sampler(tel, interval_s=0.1, gpu_indices=[0])
        sampler.start(child.pid)
        time.sleep(0.35)
        t_begin = time.time()
        sampler.mark_window("begin", t_begin)
        time.sleep(0.55)
        t_end = time.time()
        sampler.mark_window("end", t_end)
        time.sleep(0.25)
        report = sampler.stop(window_images=100, measured_epochs=1)
    finally:
        child.kill()
        child.wait()
        tel.close()
    read = [s.t for s in report.snapshots if s.gpus[0].energy_mj is not None]
    # start() and stop() read fresh too; the scheduled ticks in between do not (period 5 s)
    assert len(read) == 4, read
    assert 0 <= read[1] - t_begin < 0.05 and 0 <= read[2] - t_end < 0.05
    assert report.summary is not None and report.summary.gpus[0].energy_source == "counter"
    assert report.stats.ticks >= 10
