"""Summaries over the measured window(s): pure functions over snapshots.

Nothing here reads hardware or clocks, so CI replays recorded traces through
exactly the code the agent runs. Statistics use only the samples whose time
falls inside a window; energy is the counter (or the power integral)
interpolated at the window edges, so it does not lose the part of the window
between its edge and the nearest sample.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise

from edgebench.agent.telemetry.snapshot import GpuSample, Snapshot
from edgebench.agent.telemetry.validity import assess
from edgebench.schemas.status import GpuInfo
from edgebench.schemas.telemetry import (
    UTILISATION_MEANING,
    GpuTelemetry,
    RailEnergy,
    Stat,
    TelemetrySummary,
    TimeSeries,
)

Window = tuple[float, float]

JETSON_UTILISATION_MEANING = (
    "GPU utilisation is tegrastats' GR3D_FREQ load, relative to the GPU's current frequency; "
    "memory utilisation is the EMC (memory controller) load; power is the module's input "
    "(or the sum of its rails), not the GPU's alone; memory is unified system RAM."
)
NO_GPU_MEANING = "No GPU telemetry on this machine: GPU fields are absent, not zero."

MIB = 1024 * 1024


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of sorted values."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def stat(values: Sequence[float | None]) -> Stat | None:
    """mean, p50, p95, max of the known values; None when none is known."""
    known = sorted(float(v) for v in values if v is not None)
    if not known:
        return None
    return Stat(
        mean=sum(known) / len(known),
        p50=percentile(known, 50),
        p95=percentile(known, 95),
        max=known[-1],
    )


def in_windows(t: float, windows: Sequence[Window]) -> bool:
    return any(b <= t <= e for b, e in windows)


def _interp(ts: Sequence[float], vs: Sequence[float], x: float) -> float:
    """Piecewise-linear value at x, held constant beyond the ends."""
    if x <= ts[0]:
        return vs[0]
    if x >= ts[-1]:
        return vs[-1]
    i = bisect_right(ts, x)
    t0, t1 = ts[i - 1], ts[i]
    if t1 == t0:
        return vs[i]
    return vs[i - 1] + (vs[i] - vs[i - 1]) * (x - t0) / (t1 - t0)


def integrate(ts: Sequence[float], vs: Sequence[float], a: float, b: float) -> float | None:
    """Trapezoid integral of the piecewise-linear series over [a, b] ∩ [ts[0], ts[-1]]."""
    if len(ts) < 2:
        return None
    lo, hi = max(a, ts[0]), min(b, ts[-1])
    if hi <= lo:
        return None
    inner = ts[bisect_right(ts, lo) : bisect_left(ts, hi)]
    points = [lo, *inner, hi]
    values = [_interp(ts, vs, p) for p in points]
    return sum((points[k + 1] - points[k]) * (values[k + 1] + values[k]) / 2.0 for k in range(len(points) - 1))


def _series(
    snapshots: Sequence[Snapshot], index: int, get: Callable[[GpuSample], float | None]
) -> tuple[list[float], list[float]]:
    ts: list[float] = []
    vs: list[float] = []
    for snap in snapshots:
        for gpu in snap.gpus:
            if gpu.index == index:
                value = get(gpu)
                if value is not None and (not ts or snap.t > ts[-1]):
                    ts.append(snap.t)
                    vs.append(float(value))
    return ts, vs


def window_energy_j(
    snapshots: Sequence[Snapshot], index: int, windows: Sequence[Window]
) -> tuple[float | None, str | None]:
    """Energy of one GPU inside the windows, and how it was obtained.

    The hardware counter (mJ) is used when it covers every window and never
    goes backwards there (a driver reload resets it); otherwise power is
    integrated with the trapezoid rule.
    """
    if not windows:
        return None, None
    ts, mj = _series(snapshots, index, lambda g: g.energy_mj)
    if len(ts) >= 2:
        total = 0.0
        ok = True
        for b, e in windows:
            if b < ts[0] or e > ts[-1]:
                ok = False
                break
            seg = [v for t, v in zip(ts, mj) if b <= t <= e]
            edge_b, edge_e = _interp(ts, mj, b), _interp(ts, mj, e)
            seq = [edge_b, *seg, edge_e]
            if any(later < earlier for earlier, later in pairwise(seq)):
                ok = False
                break
            total += (edge_e - edge_b) / 1000.0
        if ok:
            return total, "counter"
    ts, watts = _series(snapshots, index, lambda g: g.power_w)
    parts = [integrate(ts, watts, b, e) for b, e in windows]
    known = [p for p in parts if p is not None]
    if not known:
        return None, None
    return sum(known), "power_integral"


def _gpu_indices(snapshots: Sequence[Snapshot]) -> list[int]:
    seen: set[int] = set()
    for snap in snapshots:
        seen.update(g.index for g in snap.gpus)
    return sorted(seen)


def _peak(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def summarize_gpu(
    snapshots: Sequence[Snapshot],
    index: int,
    windows: Sequence[Window],
    info: GpuInfo | None = None,
) -> GpuTelemetry:
    inside = [g for s in snapshots if in_windows(s.t, windows) for g in s.gpus if g.index == index]
    energy_j, energy_source = window_energy_j(snapshots, index, windows)
    reasons: Counter[str] = Counter()
    reason_samples = 0
    for g in inside:
        if g.clock_event_reasons is not None:
            reason_samples += 1
            reasons.update(g.clock_event_reasons)
    scopes = Counter(g.power_scope for g in inside if g.power_scope is not None)
    return GpuTelemetry(
        index=index,
        name=info.name if info else None,
        uuid=info.uuid if info else None,
        util_pct=stat([g.util_pct for g in inside]),
        mem_util_pct=stat([g.mem_util_pct for g in inside]),
        sm_clock_mhz=stat([g.sm_clock_mhz for g in inside]),
        mem_clock_mhz=stat([g.mem_clock_mhz for g in inside]),
        power_w=stat([g.power_w for g in inside]),
        power_scope=scopes.most_common(1)[0][0] if scopes else None,
        temperature_c=stat([g.temperature_c for g in inside]),
        mem_used_bytes_peak=_peak([g.mem_used_bytes for g in inside]),
        process_mem_bytes_peak=_peak([g.process_mem_bytes for g in inside]),
        energy_j=energy_j,
        energy_source=energy_source,  # type: ignore[arg-type]
        throttle_reasons=[name for name, _ in reasons.most_common()],
        clock_event_fractions={name: count / reason_samples for name, count in reasons.most_common()}
        if reason_samples
        else {},
    )


def _meaning(source: str) -> str:
    return {"jetson": JETSON_UTILISATION_MEANING, "none": NO_GPU_MEANING}.get(source, UTILISATION_MEANING)


def summarize(
    snapshots: Sequence[Snapshot],
    windows: Sequence[Window],
    *,
    source: str,
    interval_s: float,
    window_images: int | None = None,
    measured_epochs: int | None = None,
    memory_policy: str | None = None,
    inventory: Sequence[GpuInfo] = (),
    logical_cpus: int | None = None,
    max_cpu_freq_mhz: float | None = None,
) -> TelemetrySummary | None:
    """Summarise the samples inside ``windows`` (absolute ``time.time()`` pairs), with the
    validity record (agent/telemetry/validity.py; ``logical_cpus`` and ``max_cpu_freq_mhz``
    describe the host for it).

    Returns None when no sample falls inside any window (nothing was measured).
    """
    windows = sorted((b, e) for b, e in windows if e >= b)
    inside = [s for s in snapshots if in_windows(s.t, windows)]
    if not inside:
        return None
    by_index = {g.index: g for g in inventory}
    gpus = [summarize_gpu(snapshots, i, windows, by_index.get(i)) for i in _gpu_indices(snapshots)]
    energies = [g.energy_j for g in gpus if g.energy_j is not None]
    energy_j = sum(energies) if energies else None
    scopes = sorted({g.power_scope for g in gpus if g.energy_j is not None and g.power_scope})
    procs = [s.process for s in inside if s.process is not None]
    return TelemetrySummary(
        source=source,  # type: ignore[arg-type]
        interval_s=interval_s,
        window_s=sum(e - b for b, e in windows),
        window_count=len(windows),
        samples=len(inside),
        gpus=gpus,
        cpu_pct=stat([p.cpu_pct for p in procs]),
        rss_bytes_peak=_peak([p.rss_bytes for p in procs]),
        energy_j=energy_j,
        energy_j_per_epoch=(energy_j / measured_epochs) if energy_j is not None and measured_epochs else None,
        img_per_j=(window_images / energy_j) if energy_j and window_images is not None else None,
        energy_mj_per_image=per_image(energy_j, window_images, measured_epochs)[2],
        energy_scope="+".join(scopes) if scopes else None,
        rails=summarize_rails(snapshots, windows, window_images, measured_epochs),
        memory_policy=memory_policy,
        utilisation_meaning=_meaning(source),
        validity=assess(snapshots, windows, logical_cpus=logical_cpus, max_cpu_freq_mhz=max_cpu_freq_mhz),
    )


# --- power rails (Jetson) -------------------------------------------------------
# A Jetson reports its module's rails (the one GpuSample is the module): each rail's
# power series, per source, is integrated over the windows with the same trapezoid
# rule as a GPU without an energy counter.

def rail_series(snapshots: Sequence[Snapshot], name: str, source: str) -> tuple[list[float], list[float]]:
    """(times, watts) of one rail from one source, strictly increasing in time."""
    ts: list[float] = []
    vs: list[float] = []
    for snap in snapshots:
        for gpu in snap.gpus:
            for rail in gpu.rails:
                if rail.name == name and rail.source == source and (not ts or snap.t > ts[-1]):
                    ts.append(snap.t)
                    vs.append(rail.power_w)
    return ts, vs


def per_image(energy_j: float | None, window_images: int | None, measured_epochs: int | None
              ) -> tuple[float | None, float | None, float | None]:
    """(J per epoch, images per J, mJ per image) of one energy figure; None where undefined."""
    if energy_j is None:
        return None, None, None
    per_epoch = energy_j / measured_epochs if measured_epochs else None
    img_per_j = window_images / energy_j if energy_j > 0 and window_images is not None else None
    mj_per_image = energy_j * 1000.0 / window_images if window_images else None
    return per_epoch, img_per_j, mj_per_image


def summarize_rails(snapshots: Sequence[Snapshot], windows: Sequence[Window], window_images: int | None = None,
                    measured_epochs: int | None = None) -> list[RailEnergy]:
    """One RailEnergy per (rail, source) seen in the snapshots, module input first."""
    scopes: dict[tuple[str, str], str] = {}
    for snap in snapshots:
        for gpu in snap.gpus:
            for rail in gpu.rails:
                scopes.setdefault((rail.name, rail.source), rail.scope)
    out: list[RailEnergy] = []
    for name, source in scopes:
        ts, watts = rail_series(snapshots, name, source)
        inside = [w for t, w in zip(ts, watts) if in_windows(t, windows)]
        parts = [integrate(ts, watts, b, e) for b, e in windows]
        known = [p for p in parts if p is not None]
        energy_j = sum(known) if known else None
        per_epoch, img_per_j, mj_per_image = per_image(energy_j, window_images, measured_epochs)
        out.append(RailEnergy(
            name=name, source=source,  # type: ignore[arg-type]
            scope=scopes[name, source],  # type: ignore[arg-type]
            samples=len(inside), power_w=stat(inside), energy_j=energy_j, energy_j_per_epoch=per_epoch,
            img_per_j=img_per_j, energy_mj_per_image=mj_per_image,
        ))
    out.sort(key=lambda r: (r.scope != "module_input", r.source != "hwmon", r.name))
    return out


# --- time series --------------------------------------------------------------

_GPU_COLUMNS: tuple[tuple[str, Callable[[GpuSample], float | None], int], ...] = (
    ("util_pct", lambda g: g.util_pct, 1),
    ("mem_util_pct", lambda g: g.mem_util_pct, 1),
    ("sm_clock_mhz", lambda g: g.sm_clock_mhz, 0),
    ("mem_clock_mhz", lambda g: g.mem_clock_mhz, 0),
    ("power_w", lambda g: g.power_w, 1),
    ("temperature_c", lambda g: g.temperature_c, 1),
    ("mem_used_mib", lambda g: None if g.mem_used_bytes is None else g.mem_used_bytes / MIB, 1),
    ("process_mem_mib", lambda g: None if g.process_mem_bytes is None else g.process_mem_bytes / MIB, 1),
)


def _cumulative_energy_j(snapshots: Sequence[Snapshot], index: int) -> list[float | None]:
    """Energy since the first sample, per snapshot: counter if present, else power integral."""
    ts, mj = _series(snapshots, index, lambda g: g.energy_mj)
    if len(ts) >= 2 and all(b >= a for a, b in pairwise(mj)):
        return [None if s.t < ts[0] else (_interp(ts, mj, s.t) - mj[0]) / 1000.0 for s in snapshots]
    ts, watts = _series(snapshots, index, lambda g: g.power_w)
    if len(ts) < 2:
        return [None] * len(snapshots)
    out: list[float | None] = []
    acc = 0.0
    prev_t = ts[0]
    for s in snapshots:
        if s.t < ts[0]:
            out.append(None)
            continue
        acc += integrate(ts, watts, prev_t, s.t) or 0.0
        prev_t = max(prev_t, s.t)
        out.append(acc)
    return out


def _bucket_mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def build_timeseries(snapshots: Sequence[Snapshot], windows: Sequence[Window], max_points: int = 2000) -> TimeSeries:
    """Column-oriented series over the whole job, relative to the first sample.

    Longer series are cut into ``max_points`` buckets of consecutive samples
    and each bucket keeps its mean (time included), which keeps the shape of
    a long run without shipping every tick.
    """
    if not snapshots:
        return TimeSeries(t_s=[], columns={}, window=None)
    t0 = snapshots[0].t
    columns: dict[str, list[float | None]] = {}
    digits: dict[str, int] = {}
    for index in _gpu_indices(snapshots):
        for name, get, nd in _GPU_COLUMNS:
            col: list[float | None] = []
            for snap in snapshots:
                g = next((g for g in snap.gpus if g.index == index), None)
                col.append(None if g is None else get(g))
            if any(v is not None for v in col):
                columns[f"gpu{index}_{name}"] = col
                digits[f"gpu{index}_{name}"] = nd
        energy = _cumulative_energy_j(snapshots, index)
        if any(v is not None for v in energy):
            columns[f"gpu{index}_energy_j"] = energy
            digits[f"gpu{index}_energy_j"] = 2
    cpu = [None if s.process is None else s.process.cpu_pct for s in snapshots]
    rss = [None if s.process is None or s.process.rss_bytes is None else s.process.rss_bytes / MIB for s in snapshots]
    if any(v is not None for v in cpu):
        columns["cpu_pct"], digits["cpu_pct"] = cpu, 1
    if any(v is not None for v in rss):
        columns["rss_mib"], digits["rss_mib"] = rss, 1
    times: list[float | None] = [s.t - t0 for s in snapshots]
    n = len(snapshots)
    if n > max_points:
        edges = [round(k * n / max_points) for k in range(max_points + 1)]
        times = [_bucket_mean(times[a:b]) for a, b in pairwise(edges)]
        columns = {k: [_bucket_mean(v[a:b]) for a, b in pairwise(edges)] for k, v in columns.items()}
    rel = sorted((round(b - t0, 3), round(e - t0, 3)) for b, e in windows)
    return TimeSeries(
        t_s=[round(t or 0.0, 3) for t in times],
        columns={k: [_round(v, digits[k]) for v in col] for k, col in columns.items()},
        window=(rel[0][0], rel[-1][1]) if rel else None,
        windows=rel,
        t0_unix_s=t0,
    )
