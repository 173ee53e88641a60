"""Replayed Jetson traces (Orin Nano, Xavier NX) through the summarising code the
NVML traces go through (load_trace -> snapshots -> summarize), and through a live
Sampler fed by ReplayTelemetry: module energy (VDD_IN) and per-rail energy, J
per epoch, images per J, mJ per image, with scope and source in every label.

The traces are real-format data laid on a time axis of ours
(scripts/make_jetson_traces.py says which line and which tree each reading is);
inside the window the readings are constant, so every figure has an exact
expected value: power x window length."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgebench.agent.telemetry import ReplayTelemetry, Sampler, load_trace, summarize
from edgebench.agent.telemetry.summary import in_windows

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TRACES = sorted(FIXTURES.glob("jetson_trace_*.jsonl"))

# watts inside the window, per (rail, source): the busy Orin Nano line and its hwmon split,
# the one Xavier NX line and its split (tests/fixtures/hwmon_*.json)
EXPECTED_W = {
    "jetson_trace_orin_nano_r36": {
        ("VDD_IN", "hwmon"): 4.976 * 3.280, ("VDD_IN", "tegrastats"): 16.321,
        ("VDD_CPU_GPU_CV", "hwmon"): 4.976 * 1.428, ("VDD_CPU_GPU_CV", "tegrastats"): 7.104,
        ("VDD_SOC", "hwmon"): 4.976 * 0.627, ("VDD_SOC", "tegrastats"): 3.120,
    },
    "jetson_trace_xavier_nx_r35": {
        ("VDD_IN", "hwmon"): 5.056 * 0.546, ("VDD_IN", "tegrastats"): 2.763,
        ("VDD_CPU_GPU_CV", "hwmon"): 5.056 * 0.129, ("VDD_CPU_GPU_CV", "tegrastats"): 0.650,
        ("VDD_SOC", "hwmon"): 5.056 * 0.129, ("VDD_SOC", "tegrastats"): 0.650,
    },
}


def test_both_modules_are_recorded() -> None:
    assert [p.stem for p in TRACES] == sorted(EXPECTED_W)


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_replayed_trace_energy_per_rail_and_for_the_module(path: Path) -> None:
    trace = load_trace(path)
    assert trace.source == "jetson" and trace.end is not None and len(trace.windows) == 1
    images, epochs = trace.end["window_images"], trace.end["measured_epochs"]
    snaps = trace.snapshots()
    s = summarize(snaps, trace.windows, source="jetson", interval_s=trace.interval_s, window_images=images,
                  measured_epochs=epochs, inventory=trace.inventory)
    assert s is not None
    window = trace.windows[0][1] - trace.windows[0][0]
    assert s.window_s == pytest.approx(window) == pytest.approx(4.0)
    assert s.samples == sum(in_windows(x.t, trace.windows) for x in snaps) == 41
    # the whole module, from its input rail as read through sysfs, and labelled so
    (gpu,) = s.gpus
    assert gpu.name == trace.inventory[0].name and gpu.power_scope == "module_input:VDD_IN"
    assert s.energy_scope == "module_input:VDD_IN" and "not the GPU's alone" in s.utilisation_meaning
    module_w = EXPECTED_W[path.stem]["VDD_IN", "hwmon"]
    assert s.energy_j == pytest.approx(module_w * window)
    assert s.energy_j_per_epoch == pytest.approx(module_w * window / epochs)
    assert s.img_per_j == pytest.approx(images / (module_w * window))
    assert s.energy_mj_per_image == pytest.approx(module_w * window * 1000 / images)
    # every rail of both sources, module input first
    by = {(r.name, r.source): r for r in s.rails}
    assert set(by) == set(EXPECTED_W[path.stem])
    assert [(r.name, r.scope) for r in s.rails[:2]] == [("VDD_IN", "module_input")] * 2
    for key, watts in EXPECTED_W[path.stem].items():
        rail = by[key]
        assert rail.scope == ("module_input" if key[0] == "VDD_IN" else "rail")
        assert rail.samples == 41 and rail.power_w is not None
        assert rail.power_w.mean == pytest.approx(watts)
        assert rail.energy_j == pytest.approx(watts * window), key
        assert rail.energy_j_per_epoch == pytest.approx(watts * window / epochs)
        assert rail.img_per_j == pytest.approx(images / (watts * window))
        assert rail.energy_mj_per_image == pytest.approx(watts * window * 1000 / images)
    # the two sources read the same sensors: they agree within the split's rounding
    for name in ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"):
        hw, ts = by[name, "hwmon"].energy_j, by[name, "tegrastats"].energy_j
        assert hw is not None and ts is not None and hw == pytest.approx(ts, rel=5e-3)
    # the rails inside the module input: CPU+GPU+CV and SoC are parts of VDD_IN, never more
    assert by["VDD_CPU_GPU_CV", "hwmon"].energy_j + by["VDD_SOC", "hwmon"].energy_j < s.energy_j


def test_orin_nano_window_excludes_the_idle_readings_around_it() -> None:
    trace = load_trace(FIXTURES / "jetson_trace_orin_nano_r36.jsonl")
    s = summarize(trace.snapshots(), trace.windows, source="jetson", interval_s=0.1)
    assert s is not None
    (gpu,) = s.gpus
    assert gpu.util_pct is not None and gpu.util_pct.p50 == 99.0  # busy inside, 0 % outside
    assert gpu.power_w is not None and gpu.power_w.max == pytest.approx(4.976 * 3.280)
    whole = summarize(trace.snapshots(), [(trace.ticks[0].t, trace.ticks[-1].t)], source="jetson", interval_s=0.1)
    assert whole is not None and whole.energy_j is not None and s.energy_j is not None
    assert whole.energy_j > s.energy_j  # the idle second on each side adds energy, not counted in the window


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_live_sampler_over_the_replayed_trace(path: Path) -> None:
    """ReplayTelemetry stands in for the board in the real Sampler (as the NVML traces do)."""
    trace = load_trace(path)
    tel = ReplayTelemetry(trace)
    sampler = Sampler(tel, interval_s=0.01)
    sampler.start(os.getpid())
    t0 = time.time()
    sampler.mark_window("begin", t0)
    time.sleep(0.3)
    sampler.mark_window("end", time.time())
    report = sampler.stop(window_images=100, measured_epochs=1)
    s = report.summary
    assert s is not None and s.source == "jetson" and s.rails
    assert {r.source for r in s.rails} == {"hwmon", "tegrastats"}
    assert s.energy_scope == "module_input:VDD_IN" and s.energy_j is not None and s.energy_j > 0
