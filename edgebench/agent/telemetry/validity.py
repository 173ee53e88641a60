"""The validity record: what inside the measured window could make a result misleading.

Pure functions over snapshots (like summary.py), so recorded traces replay
through the same decisions the agent makes live. The record ends in a
verdict: ``suspect`` when at least one reason below holds, else ``valid``.
What makes a result suspect, and why:

- NVML clock events that come from the environment, not the workload:
  thermal slowdown (driver or hardware), hardware slowdown, the external
  power brake, sync boost (a GPU held to a slower peer's clock). Any in-window
  sample showing one: the clocks were lowered by something a rerun may not
  meet again.
- The enforced power limit changed inside the window (someone ran
  ``nvidia-smi -pl`` or a power manager acted mid-run).
- Another process on the job's GPU: NVML's process list holds a pid that
  never belonged to the runner's process tree during the job (the tree is
  rescanned every second, so a new runner worker is not mistaken for one).
- A GPU setting (persistence, application clocks, ECC, MIG) or the Jetson
  power mode changed between samples of the window.
- The host: other processes used at least ``OTHER_CPU_SUSPECT_SHARE`` of the
  machine's CPUs on average (the runner's own tree and the agent are not
  "other"), or the kernel's CPU thermal-throttle counters rose in the window,
  or the CPU frequency governor changed.

Recorded as notes, not suspect: running at the card's own power limit
(``sw_power_cap`` at an unchanged limit is how a power-bound workload runs,
reproducibly: it is the operating point, not a disturbance), a power limit
below the card's default (a device setting; it is part of the device group's
power mode), persistence mode off, a CPU governor other than ``performance``,
a CPU clocked well below its rating, processes NVML lists but this agent
cannot see (another pid namespace: it cannot tell whose they are).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from edgebench.agent.telemetry.snapshot import GpuSample, Snapshot
from edgebench.schemas.validity import GpuValidity, HostValidity, JetsonValidity, Validity

Window = tuple[float, float]

SUSPECT_CLOCK_EVENTS: dict[str, str] = {
    "sw_thermal_slowdown": "thermal slowdown (driver)",
    "hw_thermal_slowdown": "thermal slowdown (hardware)",
    "hw_slowdown": "hardware slowdown",
    "hw_power_brake_slowdown": "external power brake",
    "sync_boost": "sync boost (clock held to another GPU's)",
}
POWER_CAP_EVENT = "sw_power_cap"
# Mean CPU busy outside the runner's tree and the agent, as a share of the
# machine's logical CPUs: from a quarter of the machine a CPU-bound runner has
# visibly fewer cycles (on the project's 2-vCPU box one other busy core halved
# a 2-thread job); from 5 % it is worth a note.
OTHER_CPU_SUSPECT_SHARE = 0.25
OTHER_CPU_NOTE_SHARE = 0.05
# A median CPU clock below this share of the CPUs' rated maximum is noted.
LOW_CPU_FREQ_SHARE = 0.7


def _inside(snapshots: Sequence[Snapshot], windows: Sequence[Window]) -> list[Snapshot]:
    return [s for s in snapshots if any(b <= s.t <= e for b, e in windows)]


def _edges(snapshots: Sequence[Snapshot], windows: Sequence[Window]) -> list[Snapshot]:
    """Snapshots from the first in-window sample to the first sample after the last window end."""
    if not windows:
        return []
    lo, hi = windows[0][0], windows[-1][1]
    after = [s for s in snapshots if s.t > hi]
    return [s for s in snapshots if lo <= s.t <= hi] + after[:1]


def _changed(values: Iterable[object]) -> bool:
    return len({v for v in values if v is not None}) > 1


def _fmt_mib(value: int) -> str:
    return f"{value / 1024**2:,.0f} MiB"


def _gpu(index: int, inside: list[GpuSample], runner_pids: frozenset[int], reasons: list[str],
         notes: list[str]) -> GpuValidity:
    events: Counter[str] = Counter()
    with_events = 0
    for g in inside:
        if g.clock_event_reasons is not None:
            with_events += 1
            events.update(g.clock_event_reasons)
    for name, count in events.most_common():
        share = count / with_events
        if name in SUSPECT_CLOCK_EVENTS:
            reasons.append(f"GPU{index}: {SUSPECT_CLOCK_EVENTS[name]} ({name}) in {share:.0%} of the window's "
                           "samples")
    clocks = sorted(g.sm_clock_mhz for g in inside if g.sm_clock_mhz is not None)
    limits = [g.power_limit_w for g in inside if g.power_limit_w is not None]
    default = next((g.power_limit_default_w for g in inside if g.power_limit_default_w is not None), None)
    if POWER_CAP_EVENT in events:
        limit = f" ({max(limits):.0f} W)" if limits else ""
        clock = f", SM clock {clocks[0]:,.0f}-{clocks[-1]:,.0f} MHz" if clocks else ""
        notes.append(f"GPU{index}: at its power limit{limit} in {events[POWER_CAP_EVENT] / with_events:.0%} of the "
                     f"window's samples{clock}")
    if limits and max(limits) - min(limits) > 0.5:
        reasons.append(f"GPU{index}: power limit changed during the window ({min(limits):.0f}-{max(limits):.0f} W)")
    if limits and default and max(limits) < default - 0.5:
        notes.append(f"GPU{index}: power limit {max(limits):.0f} W, below the card's default {default:.0f} W")
    others: set[int] = set()
    invisible = False
    other_peak: int | None = None
    for g in inside:
        if g.processes is None:
            continue
        mem = 0
        for pid, used, visible in g.processes:
            if pid in runner_pids:
                continue
            if not visible:
                invisible = True
                continue
            others.add(pid)
            mem += used or 0
        if others:
            other_peak = max(other_peak or 0, mem)
    if others:
        size = f", up to {_fmt_mib(other_peak)}" if other_peak else ""
        reasons.append(f"GPU{index}: {len(others)} other process(es) on the GPU during the window "
                       f"(pid {', '.join(map(str, sorted(others)[:8]))}{size})")
    elif invisible:
        notes.append(f"GPU{index}: NVML lists processes this agent cannot see (another pid namespace): "
                     "whether others shared the GPU is unknown")
    settings: dict[str, list[object]] = {
        "persistence mode": [g.persistence_mode for g in inside],
        "application clocks": [(g.app_sm_clock_mhz, g.app_mem_clock_mhz) if g.app_sm_clock_mhz is not None
                               else None for g in inside],
        "ECC mode": [g.ecc_enabled for g in inside],
        "MIG mode": [g.mig_enabled for g in inside],
    }
    for name, values in settings.items():
        if _changed(values):
            reasons.append(f"GPU{index}: {name} changed during the window")
    persistence = next((g.persistence_mode for g in reversed(inside) if g.persistence_mode is not None), None)
    if persistence is False:
        notes.append(f"GPU{index}: persistence mode off (the driver may reinitialise between jobs)")
    last = inside[-1] if inside else GpuSample(index=index)
    return GpuValidity(
        index=index,
        clock_events_seen=[name for name, _ in events.most_common()][:32],
        sm_clock_mhz_min=clocks[0] if clocks else None,
        sm_clock_mhz_median=statistics.median(clocks) if clocks else None,
        power_limit_w_min=min(limits) if limits else None,
        power_limit_w_max=max(limits) if limits else None,
        power_limit_default_w=default,
        other_processes=sorted(others)[:256],
        other_processes_mem_bytes_peak=other_peak,
        processes_visible=None if all(g.processes is None for g in inside) else not invisible,
        persistence_mode=persistence,
        applications_clock_sm_mhz=last.app_sm_clock_mhz,
        applications_clock_mem_mhz=last.app_mem_clock_mhz,
        ecc_enabled=last.ecc_enabled,
        mig_enabled=last.mig_enabled,
    )


def _host(inside: list[Snapshot], edges: list[Snapshot], logical_cpus: int | None, max_freq_mhz: float | None,
          reasons: list[str], notes: list[str]) -> HostValidity | None:
    hosts = [s.host for s in inside if s.host is not None]
    if not hosts and not any(s.host for s in edges):
        return None
    other: list[float] = []
    for s in inside:
        h = s.host
        if h is None or h.busy_cpu_pct is None:
            continue
        runner = s.process.cpu_pct if s.process is not None and s.process.cpu_pct is not None else 0.0
        other.append(max(0.0, h.busy_cpu_pct - runner - (h.agent_cpu_pct or 0.0)))
    other.sort()
    other_mean = statistics.fmean(other) if other else None
    if other_mean is not None and logical_cpus:
        share = other_mean / (100.0 * logical_cpus)
        text = (f"other processes kept {other_mean / 100:.2f} of the host's {logical_cpus} CPUs busy on average "
                f"during the window ({share:.0%})")
        if share >= OTHER_CPU_SUSPECT_SHARE:
            reasons.append(text)
        elif share >= OTHER_CPU_NOTE_SHARE:
            notes.append(text)
    governors = [s.host.governors for s in edges if s.host is not None and s.host.governors is not None]
    seen: list[str] = []
    for g in governors:
        seen += [name for name in g if name not in seen]
    if len({g for g in governors if g}) > 1:
        reasons.append(f"CPU frequency governor changed during the window ({' -> '.join(seen)})")
    elif seen and seen != ["performance"]:
        notes.append(f"CPU frequency governor {', '.join(seen)} (not performance: clocks follow the load)")
    throttle = [s.host.thermal_throttle_count for s in edges
                if s.host is not None and s.host.thermal_throttle_count is not None]
    events = throttle[-1] - throttle[0] if len(throttle) >= 2 else None
    if events:
        reasons.append(f"CPU thermal throttling: the kernel counted {events} event(s) during the window")
    freqs = sorted(h.cpu_freq_mhz for h in hosts if h.cpu_freq_mhz is not None)
    median_freq = statistics.median(freqs) if freqs else None
    if median_freq and max_freq_mhz and median_freq < LOW_CPU_FREQ_SHARE * max_freq_mhz:
        notes.append(f"CPUs ran at {median_freq:,.0f} MHz (median) of {max_freq_mhz:,.0f} MHz rated")
    loads = [h.load_avg_1m for h in hosts if h.load_avg_1m is not None]
    return HostValidity(
        logical_cpus=logical_cpus,
        cpu_governors=seen[:16],
        cpu_freq_mhz_min=freqs[0] if freqs else None,
        cpu_freq_mhz_median=median_freq,
        cpu_freq_mhz_max_hw=max_freq_mhz,
        cpu_thermal_throttle_events=events,
        other_cpu_pct_mean=other_mean,
        other_cpu_pct_p95=other[min(len(other) - 1, int(0.95 * len(other)))] if other else None,
        load_avg_1m_max=max(loads) if loads else None,
    )


def _jetson(edges: list[Snapshot], reasons: list[str], notes: list[str]) -> JetsonValidity | None:
    states = [s.state for s in edges if s.state]
    if not states:
        return None
    modes = [str(st["nvpmodel_mode"])[:300] for st in states if st.get("nvpmodel_mode") is not None]
    clocks = [bool(st["jetson_clocks"]) for st in states if st.get("jetson_clocks") is not None]
    changed = len(set(modes)) > 1 if modes else None
    if changed:
        reasons.append(f"Jetson power mode changed during the window ({' -> '.join(dict.fromkeys(modes))})")
    if _changed(clocks):
        reasons.append("jetson_clocks was switched during the window")
    elif clocks and not clocks[-1]:
        notes.append("jetson_clocks off: clocks follow the load (DVFS)")
    if not modes and not clocks:
        return None
    return JetsonValidity(nvpmodel_mode=modes[-1] if modes else None, nvpmodel_changed=changed,
                          jetson_clocks=clocks[-1] if clocks else None)


def assess(
    snapshots: Sequence[Snapshot],
    windows: Sequence[Window],
    *,
    logical_cpus: int | None = None,
    max_cpu_freq_mhz: float | None = None,
) -> Validity | None:
    """The validity record of the samples inside ``windows``; None when no sample lies inside."""
    windows = sorted((b, e) for b, e in windows if e >= b)
    inside = _inside(snapshots, windows)
    if not inside:
        return None
    edges = _edges(snapshots, windows)
    runner_pids = frozenset(pid for s in snapshots if s.process is not None for pid in s.process.pids)
    reasons: list[str] = []
    notes: list[str] = []
    indices = sorted({g.index for s in inside for g in s.gpus})
    gpus = [_gpu(i, [g for s in inside for g in s.gpus if g.index == i], runner_pids, reasons, notes)
            for i in indices]
    host = _host(inside, edges, logical_cpus, max_cpu_freq_mhz, reasons, notes)
    jetson = _jetson(edges, reasons, notes)
    return Validity(
        verdict="suspect" if reasons else "valid",
        reasons=[r[:300] for r in reasons][:64],
        notes=[n[:300] for n in notes][:64],
        gpus=gpus[:64],
        host=host,
        jetson=jetson,
    )
