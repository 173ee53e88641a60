"""The validity record, on real recorded NVML traces replayed through the agent's own code.

tests/fixtures/nvml_trace_h200.jsonl and nvml_trace_h200_lean.jsonl are real H200 recordings (a bf16
matmul load): they carry real clock-event reasons, ``sw_power_cap`` in about half of the measured
window (the card at its 700 W limit, SM clock down to 1,425 MHz from 1,980). No trace with a thermal
slowdown, a power-limit change or a foreign process exists (no GPU machine could be used to record
one: the device tool sends a checkout without this code): those tests EDIT a copy of the real trace
in memory, and each says what it changed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edgebench.agent.telemetry import GpuSample, ProcessSample, Snapshot, load_trace, summarize
from edgebench.agent.telemetry.host import HostMeter, read_governors, read_thermal_throttle_count
from edgebench.agent.telemetry.snapshot import HostSample
from edgebench.agent.telemetry.trace import Trace, TraceTick
from edgebench.agent.telemetry.validity import OTHER_CPU_SUSPECT_SHARE, assess
from edgebench.schemas.telemetry import TelemetrySummary

from .conftest import FIXTURES

REAL = FIXTURES / "nvml_trace_h200.jsonl"


def _summary(trace: Trace) -> TelemetrySummary:
    s = summarize(trace.snapshots(), trace.windows, source=trace.source, interval_s=trace.interval_s,
                  **trace.host_facts())
    assert s is not None and s.validity is not None
    return s


def _edited(edit: Any) -> Trace:
    """A copy of the real trace whose in-window ticks' raw device readings went through ``edit``."""
    trace = load_trace(REAL)
    (b, e), = trace.windows
    ticks = []
    for i, tick in enumerate(trace.ticks):
        raw = copy.deepcopy(tick.raw)
        if b <= tick.t <= e:
            for dev in raw["devices"]:
                edit(i, dev)
        ticks.append(TraceTick(tick.t, raw, tick.proc, tick.host, tick.state))
    return Trace(trace.source, trace.interval_s, trace.inventory, ticks, trace.windows, trace.header, trace.end)


@pytest.mark.parametrize("path", [REAL, FIXTURES / "nvml_trace_h200_lean.jsonl"], ids=lambda p: p.name)
def test_a_real_power_capped_window_is_valid_with_a_note(path: Path) -> None:
    validity = _summary(load_trace(path)).validity
    assert validity is not None
    assert validity.verdict == "valid" and validity.reasons == []
    (gpu,) = validity.gpus
    assert gpu.clock_events_seen == ["sw_power_cap"]
    # the recorded clocks: full 1,980 MHz, down to 1,380-1,425 MHz while power-capped
    assert 1300 < gpu.sm_clock_mhz_min < 1500 < gpu.sm_clock_mhz_median < 1980
    assert gpu.other_processes == [] and gpu.processes_visible is True
    assert any("at its power limit" in n and "% of the window" in n for n in validity.notes)


def test_edited_thermal_slowdown_makes_it_suspect() -> None:
    # EDITED: bit 0x40 (hw_thermal_slowdown) added to every 5th in-window sample's reasons
    trace = _edited(lambda i, dev: dev.update(clock_event_reasons=(dev["clock_event_reasons"] or 0) | 0x40)
                    if i % 5 == 0 else None)
    validity = _summary(trace).validity
    assert validity is not None and validity.verdict == "suspect"
    assert any("thermal slowdown (hardware)" in r and "hw_thermal_slowdown" in r for r in validity.reasons)
    assert "hw_thermal_slowdown" in validity.gpus[0].clock_events_seen


def test_edited_sync_boost_and_hw_slowdown_are_suspect_too() -> None:
    # EDITED: 0x10 (sync boost) and 0x8 (hardware slowdown) on one in-window sample each
    trace = _edited(lambda i, dev: dev.update(clock_event_reasons=(dev["clock_event_reasons"] or 0)
                                              | (0x10 if i == 100 else 0x8 if i == 120 else 0)))
    reasons = " ".join(_summary(trace).validity.reasons)  # type: ignore[union-attr]
    assert "sync boost" in reasons and "hardware slowdown" in reasons


def test_edited_power_limit_change_is_suspect_and_a_low_limit_is_a_note() -> None:
    # EDITED: the enforced limit (not in the old trace) 700 W, then 450 W from the 150th tick; default 700 W
    trace = _edited(lambda i, dev: dev.update(power_limit_mw=700_000 if i < 150 else 450_000,
                                              power_limit_default_mw=700_000))
    validity = _summary(trace).validity
    assert validity is not None and validity.verdict == "suspect"
    assert any("power limit changed during the window (450-700 W)" in r for r in validity.reasons)
    gpu = validity.gpus[0]
    assert (gpu.power_limit_w_min, gpu.power_limit_w_max, gpu.power_limit_default_w) == (450.0, 700.0, 700.0)
    steady = _edited(lambda i, dev: dev.update(power_limit_mw=450_000, power_limit_default_mw=700_000))
    v = _summary(steady).validity
    assert v is not None and v.verdict == "valid"
    assert any("power limit 450 W, below the card's default 700 W" in n for n in v.notes)


def test_edited_foreign_process_on_the_gpu_is_suspect() -> None:
    # EDITED: pid 4242 (not the runner's, visible) with 2 GiB on the GPU in the in-window samples
    trace = _edited(lambda i, dev: dev.update(processes=[*(dev["processes"] or []), [4242, 2 << 30, True]]))
    validity = _summary(trace).validity
    assert validity is not None and validity.verdict == "suspect"
    assert validity.gpus[0].other_processes == [4242]
    assert validity.gpus[0].other_processes_mem_bytes_peak == 2 << 30
    assert any("1 other process(es) on the GPU during the window (pid 4242, up to 2,048 MiB)" in r
               for r in validity.reasons)


def test_a_pid_of_the_runner_tree_seen_late_is_not_foreign() -> None:
    # EDITED: a second runner worker, pid 1558, on the GPU; the process tree lists it only after the window
    trace = load_trace(REAL)
    (b, e), = trace.windows
    ticks = []
    for tick in trace.ticks:
        raw = copy.deepcopy(tick.raw)
        proc = tick.proc
        if b <= tick.t <= e:
            raw["devices"][0]["processes"] = [*raw["devices"][0]["processes"], [1558, 1 << 30, True]]
        if tick.t > e and proc is not None:
            proc = ProcessSample(pids=proc.pids | {1558}, cpu_pct=proc.cpu_pct, rss_bytes=proc.rss_bytes)
        ticks.append(TraceTick(tick.t, raw, proc))
    edited = Trace(trace.source, trace.interval_s, trace.inventory, ticks, trace.windows, trace.header)
    validity = _summary(edited).validity
    assert validity is not None and validity.gpus[0].other_processes == []


def test_invisible_processes_are_a_note_not_a_verdict() -> None:
    # EDITED: a pid from another pid namespace (visible False) on the GPU
    trace = _edited(lambda i, dev: dev.update(processes=[[987654, 1 << 30, False]]))
    validity = _summary(trace).validity
    assert validity is not None and validity.verdict == "valid"
    assert validity.gpus[0].processes_visible is False
    assert any("cannot see" in n for n in validity.notes)


def test_ecc_or_mig_changing_inside_the_window_is_suspect() -> None:
    # EDITED: ECC mode read as on, then off from the 160th tick
    trace = _edited(lambda i, dev: dev.update(ecc_current=1 if i < 160 else 0, mig_current=0, persistence_mode=0))
    validity = _summary(trace).validity
    assert validity is not None and any("ECC mode changed" in r for r in validity.reasons)
    assert any("persistence mode off" in n for n in validity.notes)
    assert validity.gpus[0].mig_enabled is False


# --- the host ----------------------------------------------------------------------------


def _host_snaps(other_pct: float, cpus: int = 2, governors: tuple[str, ...] = ("performance",),
                throttle: tuple[int, int] = (0, 0)) -> list[Snapshot]:
    """Hand-made snapshots (pure arithmetic under test): the runner at 150 % of one core."""
    out = []
    for k in range(11):
        edge = k in (0, 10)
        host = HostSample(busy_cpu_pct=150.0 + 2.0 + other_pct, agent_cpu_pct=2.0, cpu_freq_mhz=2000.0,
                          load_avg_1m=1.0, governors=governors if edge else None,
                          thermal_throttle_count=(throttle[0] if k == 0 else throttle[1]) if edge else None)
        out.append(Snapshot(t=100.0 + k, gpus=(), process=ProcessSample(frozenset({1}), 150.0, 1 << 20), host=host))
    return out


def test_other_processes_load_the_host() -> None:
    busy = assess(_host_snaps(other_pct=120.0), [(100.0, 110.0)], logical_cpus=2)
    assert busy is not None and busy.verdict == "suspect"
    assert busy.host is not None and busy.host.other_cpu_pct_mean == pytest.approx(120.0)
    assert any("other processes kept 1.20 of the host's 2 CPUs busy" in r for r in busy.reasons)
    quiet = assess(_host_snaps(other_pct=4.0), [(100.0, 110.0)], logical_cpus=2)
    assert quiet is not None and quiet.verdict == "valid" and quiet.notes == []
    threshold = 100.0 * 2 * OTHER_CPU_SUSPECT_SHARE
    assert assess(_host_snaps(threshold + 1), [(100.0, 110.0)], logical_cpus=2).verdict == "suspect"  # type: ignore
    assert assess(_host_snaps(threshold - 1), [(100.0, 110.0)], logical_cpus=2).verdict == "valid"  # type: ignore


def test_cpu_governor_and_thermal_throttling() -> None:
    v = assess(_host_snaps(0.0, governors=("powersave",)), [(100.0, 110.0)], logical_cpus=2)
    assert v is not None and v.verdict == "valid" and v.host.cpu_governors == ["powersave"]  # type: ignore
    assert any("governor powersave" in n for n in v.notes)
    hot = assess(_host_snaps(0.0, throttle=(10, 14)), [(100.0, 110.0)], logical_cpus=2)
    assert hot is not None and hot.verdict == "suspect" and hot.host.cpu_thermal_throttle_events == 4  # type: ignore
    assert any("CPU thermal throttling: the kernel counted 4" in r for r in hot.reasons)


def test_jetson_power_mode_from_the_device_state_hook() -> None:
    snaps = _host_snaps(0.0)
    snaps[0] = Snapshot(snaps[0].t, (), snaps[0].process, snaps[0].host,
                        {"nvpmodel_mode": "MAXN", "jetson_clocks": True})
    snaps[-1] = Snapshot(snaps[-1].t, (), snaps[-1].process, snaps[-1].host,
                         {"nvpmodel_mode": "15W", "jetson_clocks": True})
    v = assess(snaps, [(100.0, 110.0)], logical_cpus=2)
    assert v is not None and v.verdict == "suspect" and v.jetson is not None
    assert v.jetson.nvpmodel_mode == "15W" and v.jetson.nvpmodel_changed is True
    assert any("Jetson power mode changed during the window (MAXN -> 15W)" in r for r in v.reasons)


def test_host_meter_reads_this_machine(tmp_path: Path) -> None:
    """The real readers on this machine, and on a fake sysfs tree for what this VM lacks."""
    meter = HostMeter()
    first, second = meter.sample(fresh=True), meter.sample()
    assert first.busy_cpu_pct is None and second.busy_cpu_pct is not None and second.busy_cpu_pct >= 0
    assert first.governors is not None and second.governors is None  # read on fresh ticks only
    cpu0 = tmp_path / "cpu0"
    (cpu0 / "cpufreq").mkdir(parents=True)
    (cpu0 / "cpufreq" / "scaling_governor").write_text("schedutil\n")
    (cpu0 / "thermal_throttle").mkdir()
    (cpu0 / "thermal_throttle" / "core_throttle_count").write_text("3\n")
    (cpu0 / "thermal_throttle" / "package_throttle_count").write_text("2\n")
    assert read_governors(tmp_path) == ("schedutil",)
    assert read_thermal_throttle_count(tmp_path) == 5
    assert read_thermal_throttle_count(tmp_path / "none") is None


def test_the_record_travels_in_the_result_schema() -> None:
    s = _summary(load_trace(REAL))
    doc = json.loads(s.model_dump_json())
    assert doc["validity"]["verdict"] == "valid"
    assert TelemetrySummary.model_validate_json(json.dumps(doc)) == s


def test_no_window_no_record() -> None:
    snaps = [Snapshot(t=1.0, gpus=(GpuSample(index=0),))]
    assert assess(snaps, [(5.0, 6.0)]) is None
