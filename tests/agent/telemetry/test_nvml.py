"""NVML code paths: the pure conversions, and recorded traces replayed through them.

There is no GPU on CI: live NVML is exercised by benchmarks/gpu_telemetry_check.py
on a real card, which records the traces (tests/fixtures/nvml_trace_*.jsonl)
replayed here. nvml_trace_synthetic.jsonl is hand-made and says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edgebench.agent.telemetry import NvmlTelemetry, ReplayTelemetry, TelemetryUnavailable, load_trace, summarize
from edgebench.agent.telemetry.nvml import decode_clock_event_reasons, process_tree_memory, sample_from_raw
from edgebench.agent.telemetry.summary import in_windows

from .conftest import nvml_traces


def test_decode_clock_event_reasons() -> None:
    assert decode_clock_event_reasons(None) is None
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x1) == ("gpu_idle",)
    assert decode_clock_event_reasons(0x4 | 0x40) == ("sw_power_cap", "hw_thermal_slowdown")
    assert decode_clock_event_reasons(0x1000 | 0x8) == ("hw_slowdown", "unknown_0x1000")


def test_process_memory_matches_the_tree() -> None:
    procs: list[list[Any]] = [[10, 100, True], [20, 300, True], [30, None, True]]
    assert process_tree_memory(procs, {20}) == 300
    assert process_tree_memory(procs, {10, 20, 99}) == 400
    assert process_tree_memory(procs, {30}) is None  # NVML could not tell its size
    assert process_tree_memory(procs, {99}) == 0  # every listed pid is visible and none is ours
    assert process_tree_memory([], {99}) == 0
    assert process_tree_memory(None, {99}) is None  # per-process list unsupported


def test_foreign_pid_namespace_gives_none_not_zero() -> None:
    # In a container without --pid=host NVML lists host pids we cannot see.
    assert process_tree_memory([[123456, 5 << 30, False]], {7}) is None
    # ...unless the caller named the host pid (extra_pids): then it matches.
    assert process_tree_memory([[123456, 5 << 30, False]], {7, 123456}) == 5 << 30


def test_sample_units() -> None:
    s = sample_from_raw(
        {
            "index": 3,
            "util_gpu_pct": 97,
            "util_mem_pct": 41,
            "sm_clock_mhz": 1980,
            "mem_clock_mhz": 3201,
            "mem_used_bytes": 1 << 30,
            "mem_total_bytes": 2 << 30,
            "power_mw": 404_123,
            "energy_mj": 123_456_789,
            "temperature_c": 55,
            "clock_event_reasons": 0x4,
            "processes": [[42, 1 << 29, True]],
        },
        {42},
    )
    assert s.index == 3 and s.util_pct == 97.0 and s.power_w == pytest.approx(404.123)
    assert s.power_scope == "gpu_board" and s.energy_mj == 123_456_789.0
    assert s.process_mem_bytes == 1 << 29 and s.clock_event_reasons == ("sw_power_cap",)


def test_unsupported_metrics_are_none() -> None:
    s = sample_from_raw({"index": 0})
    for name in ("util_pct", "power_w", "power_scope", "energy_mj", "process_mem_bytes", "clock_event_reasons"):
        assert getattr(s, name) is None


def test_no_driver_here_means_unavailable() -> None:
    with pytest.raises(TelemetryUnavailable):
        NvmlTelemetry()


@pytest.mark.parametrize("path", nvml_traces(), ids=lambda p: p.name)
def test_recorded_trace_summary_invariants(path: Path) -> None:
    trace = load_trace(path)
    assert trace.source == "nvml" and trace.ticks and trace.windows and trace.inventory
    snaps = trace.snapshots()
    summary = summarize(
        snaps,
        trace.windows,
        source="nvml",
        interval_s=trace.interval_s,
        window_images=1000,
        measured_epochs=2,
        memory_policy="default",
        inventory=trace.inventory,
    )
    assert summary is not None
    assert summary.samples == sum(in_windows(s.t, trace.windows) for s in snaps)
    assert summary.window_s == pytest.approx(sum(e - b for b, e in trace.windows))
    assert "fraction of the sample period" in summary.utilisation_meaning
    for gpu in summary.gpus:
        info = next(g for g in trace.inventory if g.index == gpu.index)
        assert gpu.uuid == info.uuid and gpu.name == info.name
        if gpu.util_pct is not None:
            assert 0 <= gpu.util_pct.p50 <= gpu.util_pct.p95 <= gpu.util_pct.max <= 100
        if gpu.power_w is not None and gpu.energy_j is not None:
            # energy over the window agrees with mean power x window length
            assert gpu.energy_j == pytest.approx(gpu.power_w.mean * summary.window_s, rel=0.15)
            assert gpu.energy_source in ("counter", "power_integral")
        if gpu.mem_used_bytes_peak is not None and info.mem_total_bytes:
            assert gpu.mem_used_bytes_peak <= info.mem_total_bytes
        if gpu.process_mem_bytes_peak is not None and gpu.mem_used_bytes_peak is not None:
            assert gpu.process_mem_bytes_peak <= gpu.mem_used_bytes_peak
    if summary.energy_j:
        assert summary.img_per_j == pytest.approx(1000 / summary.energy_j)
        assert summary.energy_j_per_epoch == pytest.approx(summary.energy_j / 2)


def test_counter_and_power_integral_agree_on_the_synthetic_trace() -> None:
    trace = load_trace(Path(__file__).resolve().parents[2] / "fixtures" / "nvml_trace_synthetic.jsonl")
    summary = summarize(trace.snapshots(), trace.windows, source="nvml", interval_s=0.1, inventory=trace.inventory)
    assert summary is not None
    gpu0, gpu1 = summary.gpus
    assert gpu0.energy_source == "counter" and gpu1.energy_source == "power_integral"
    # Its counter was written as the trapezoid of its power: both methods must agree.
    no_counter = [
        dataclasses.replace(s, gpus=tuple(dataclasses.replace(g, energy_mj=None) for g in s.gpus))
        for s in trace.snapshots()
    ]
    integ = summarize(no_counter, trace.windows, source="nvml", interval_s=0.1)
    assert integ is not None
    assert integ.gpus[0].energy_source == "power_integral"
    assert integ.gpus[0].energy_j == pytest.approx(gpu0.energy_j, rel=1e-3)
    assert gpu0.process_mem_bytes_peak == 13_900 * 2**20  # the workload pid, not the foreign one
    assert gpu1.process_mem_bytes_peak is None and gpu1.throttle_reasons == []
    assert gpu0.throttle_reasons == ["sw_power_cap"]
    assert gpu0.clock_event_fractions["sw_power_cap"] == pytest.approx(0.25)


def test_replay_telemetry_serves_ticks_in_order_then_holds_the_last() -> None:
    path = nvml_traces()[0]
    tel = ReplayTelemetry(path)
    n = len(tel.trace.ticks)
    first = tel.read_raw()
    assert first == tel.trace.ticks[0].raw
    index = first["devices"][0]["index"]  # a trace may hold only the job's GPU
    for _ in range(n + 3):
        last = tel.read_raw([index])
    assert tel.exhausted
    assert [d["index"] for d in last["devices"]] == [index]
    assert tel.inventory() == tel.trace.inventory
