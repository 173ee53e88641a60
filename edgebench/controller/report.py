"""Comparison reports built from stored results (renderers live in controller/render/).

A :class:`Report` holds one :class:`Cell` per (device, workload, mode, backend,
batch size, precision, GPU count): the latest stored attempt. From the cells it
derives the 2019 study's tables per device (img/s per backend and batch size,
the ratio to a baseline backend), a fleet view (devices x backends for one
workload) and scaling tables where several GPU counts exist. Every figure keeps
its dispersion, and a cell carries flags where its number should not be read
alone (noisy, few batches, too few telemetry samples) or compared blindly
(mixed library versions, synthetic vs real data, different precision).

Renderers must not compute anything: they format what is here, so that the
terminal, Markdown, CSV, JSON and HTML outputs show the same numbers.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from edgebench.controller.errors import ControllerUsageError
from edgebench.controller.store import ResultRow, ResultStore, jobs
from edgebench.schemas import AgentStatus, JobSpec, Result
from edgebench.schemas.telemetry import UTILISATION_MEANING, TimeSeries

WORKLOAD_NAMES = {
    ("mlp", "fashion_mnist"): "Fashion-MNIST MLP",
    ("cnn", "fashion_mnist"): "Fashion-MNIST CNN",
    ("resnet56", "cifar10"): "CIFAR-10 ResNet-56",
    ("resnet50", "synthetic_imagenet"): "synthetic ResNet-50",
    ("resnet50", "imagenet"): "ImageNet ResNet-50",
}

# Order in which a baseline is picked when none is given: the 2019 study's
# reference (Keras on TensorFlow) first, then the native framework.
BASELINE_PREFERENCE = ("keras-tensorflow", "torch", "keras-jax", "keras-torch", "keras-tensorflow1",
                       "keras-mxnet", "sleep")

# Thresholds for the flags. Coefficients of variation (sd / mean).
NOISY_REPEAT_CV = 0.10  # repeats of one job disagree by more than this
NOISY_BATCH_CV = 0.50  # per-batch throughput jitters by more than this
FEW_BATCHES = 20
FEW_TELEMETRY_SAMPLES = 10

# Two-sided 95 % Student t quantiles for n-1 degrees of freedom (n repeats).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(dof: int) -> float:
    if dof in _T95:
        return _T95[dof]
    known = [d for d in _T95 if d <= dof]
    return _T95[max(known)] if dof < 30 else 1.96


def workload_label(model: str, dataset: str) -> str:
    return WORKLOAD_NAMES.get((model, dataset), f"{dataset} {model}")


class SelectionError(ControllerUsageError, ValueError):
    """A filter names something that does not parse (a time, a workload)."""


# --- selection -----------------------------------------------------------------------


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO date/time (naive = UTC) or an age such as ``30m``, ``12h``, ``7d``, ``2w``."""
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        start = (now or datetime.now(timezone.utc)) - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
        return start.astimezone(timezone.utc)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(f"not a time: {text!r} (use 2026-11-28, 2026-11-28T15:00 or an age like 12h, 7d)")\
            from None
    # stored times are UTC: compare in UTC (SQLite compares them as text)
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Selection:
    """Which stored results a report (or an export) covers."""

    sweep: str | None = None
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()  # catalogue names (fashion-mnist-mlp) or model/dataset
    backends: tuple[str, ...] = ()
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> str:
        parts = []
        if self.sweep:
            parts.append(f"sweep {self.sweep}")
        for name, values in (("device", self.devices), ("tag", self.tags), ("workload", self.workloads),
                             ("backend", self.backends)):
            if values:
                parts.append(f"{name} {', '.join(values)}")
        if self.model:
            parts.append(f"model {self.model}")
        if self.since:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M} UTC")
        if self.until:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts) or "all stored results"


def _workload_keys(names: tuple[str, ...]) -> set[tuple[str, str]]:
    from edgebench.runner.catalogue import WORKLOADS

    keys = set()
    for name in names:
        if name in WORKLOADS:
            keys.add((str(WORKLOADS[name]["model"]), str(WORKLOADS[name]["dataset"])))
        elif "/" in name:
            model, dataset = name.split("/", 1)
            keys.add((model, dataset))
        else:
            raise SelectionError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)} (or model/dataset)")
    return keys


def job_tags(store: ResultStore, rows: list[ResultRow]) -> dict[tuple[str, str], set[str]]:
    """Tags of each (job, device) from its dispatched spec (failed jobs have no Result)."""
    ids = {r.job_id for r in rows}
    if not ids:
        return {}
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.spec_json)
                             .where(jobs.c.job_id.in_(ids))).all()
    return {(j, d): set(JobSpec.model_validate_json(s).tags) for j, d, s in found}


def select(store: ResultStore, selection: Selection) -> tuple[list[ResultRow], dict[str, AgentStatus]]:
    """The stored results a selection covers, and the statuses of the devices they ran on."""
    # single values go to SQL; lists and tags are filtered here
    rows = store.results(sweep_id=selection.sweep, model=selection.model, since=selection.since,
                         until=selection.until,
                         device_id=selection.devices[0] if len(selection.devices) == 1 else None,
                         backend=selection.backends[0] if len(selection.backends) == 1 else None)
    statuses = {s.device_id: s for s in store.devices()}
    if selection.devices:
        rows = [r for r in rows if r.device_id in selection.devices]
    if selection.backends:
        rows = [r for r in rows if r.backend in selection.backends]
    if selection.workloads:
        keys = _workload_keys(selection.workloads)
        rows = [r for r in rows if (r.model, r.dataset) in keys]
    if selection.tags:
        wanted = set(selection.tags)
        spec_tags = job_tags(store, rows)
        rows = [r for r in rows
                if wanted & set(statuses[r.device_id].tags if r.device_id in statuses else ())
                or wanted & spec_tags.get((r.job_id, r.device_id), set())]
    used = {r.device_id for r in rows}
    return rows, {d: s for d, s in statuses.items() if d in used}


# --- cells ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One backend x configuration on one device and workload (the latest attempt)."""

    device_id: str
    workload: str  # human label, e.g. "Fashion-MNIST MLP"
    model: str
    dataset: str
    mode: str
    backend: str
    batch_size: int
    precision: str
    gpus: int
    outcome: str  # OK, OOM, FAILED, TIMED_OUT
    job_id: str
    finished_at: datetime | None = None
    reason: str | None = None
    # throughput: images / measured window of the median repeat
    img_per_s: float | None = None
    median_img_per_s: float | None = None  # per batch
    mean_img_per_s: float | None = None  # per batch
    batch_sd: float | None = None  # sd of per-batch img/s
    n_batches: int | None = None
    n_samples: int | None = None  # per-batch samples behind batch_sd (fewer than n_batches when pooled)
    window_s: float | None = None
    repeats: int = 0
    repeat_sd: float | None = None  # sd of the repeats' window img/s
    repeat_min: float | None = None
    repeat_max: float | None = None
    ci95: float | None = None  # half-width of the 95 % t-interval of the repeats' mean
    ratio: float | None = None  # img/s over the baseline backend's, same device/workload/config
    # telemetry, inside the measured windows
    cpu_only: bool = True  # no GPU asked for or none observed: GPU metrics are "n/a"
    telemetry_source: str | None = None
    telemetry_samples: int | None = None
    gpu_util_pct: float | None = None
    sm_clock_mhz: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    energy_j_per_img: float | None = None
    peak_mem_bytes: int | None = None
    mem_policy: str | None = None
    cpu_pct: float | None = None  # runner process tree, % of one core
    rss_peak_bytes: int | None = None
    data_source: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "OK" and self.img_per_s is not None

    @property
    def sd(self) -> float | None:
        """The dispersion shown beside img/s: over repeats when there are several, else per batch."""
        return self.repeat_sd if self.repeats >= 2 else self.batch_sd

    @property
    def sd_basis(self) -> str:
        if self.repeats >= 2:
            return f"{self.repeats} repeats"
        if not self.n_batches:
            return "-"
        if self.n_samples is not None and self.n_samples != self.n_batches:
            return f"{self.n_samples} samples of {self.n_batches} batches"
        return f"{self.n_batches} batches"

    @property
    def config(self) -> tuple[str, str, str, int, str, int]:
        """Everything but device and backend: what a comparison holds fixed."""
        return (self.model, self.dataset, self.mode, self.batch_size, self.precision, self.gpus)


def _cv(sd: float | None, mean: float | None) -> float | None:
    return sd / mean if sd is not None and mean else None


def job_variant(r: ResultRow) -> str:
    """Knobs the job set explicitly beyond precision (layout, compilation), as a label suffix.

    Part of a cell's identity, so that a knob sweep's configurations are not
    merged into one cell; shown beside the precision.
    """
    parts = []
    if r.data_format:
        parts.append(str(r.data_format))
    if r.compiled is not None:
        parts.append("compiled" if r.compiled else "eager")
    return "".join(f" · {p}" for p in parts)


def make_cell(r: ResultRow, res: Result | None, variant: str = "") -> Cell:
    """variant: job_variant(r), computed once by the caller."""
    base: dict[str, Any] = dict(
        # rows stored before unsolicited events were kept apart may lack any of these
        device_id=r.device_id, workload=workload_label(r.model or "?", r.dataset or "?"), model=r.model or "?",
        dataset=r.dataset or "?", mode=r.mode or "?", backend=r.backend or "?", batch_size=r.batch_size or 0,
        precision=(r.precision or "?") + variant,
        gpus=r.gpus or 0,
        outcome=r.outcome, job_id=r.job_id, finished_at=r.finished_at, reason=r.reason,
        cpu_only=(r.gpus or 0) == 0,
    )
    if res is None:
        return Cell(**base)
    runs = [run.throughput.window_img_per_s for run in res.runs]
    repeat_sd = statistics.stdev(runs) if len(runs) >= 2 else None
    tel = res.telemetry
    gpus = tel.gpus if tel else []
    cpu_only = res.gpus == 0 or tel is None or tel.source == "none" or not gpus
    first = gpus[0] if gpus else None
    peaks = [g.process_mem_bytes_peak or g.mem_used_bytes_peak for g in gpus]
    # Energy covers every measured window (all repeats), so it is divided by
    # the images of all repeats, not by one repeat's.
    images = sum(run.throughput.images for run in res.runs)
    energy = tel.energy_j if tel else None
    flags = []
    if repeat_sd is not None and (_cv(repeat_sd, statistics.mean(runs)) or 0) > NOISY_REPEAT_CV:
        flags.append("noisy")
    elif (_cv(res.summary.std_img_per_s, res.summary.mean_img_per_s) or 0) > NOISY_BATCH_CV:
        flags.append("noisy")
    if res.summary.n_batches < FEW_BATCHES:
        flags.append("few batches")
    if tel is not None and not cpu_only and tel.samples < FEW_TELEMETRY_SAMPLES:
        flags.append("few samples")
    base.update(
        img_per_s=res.summary.window_img_per_s,
        median_img_per_s=res.summary.median_img_per_s,
        mean_img_per_s=res.summary.mean_img_per_s,
        batch_sd=res.summary.std_img_per_s,
        n_batches=res.summary.n_batches,
        n_samples=res.summary.n_samples,
        window_s=res.summary.window_s,
        repeats=len(runs),
        repeat_sd=repeat_sd,
        repeat_min=min(runs) if runs else None,
        repeat_max=max(runs) if runs else None,
        ci95=t95(len(runs) - 1) * repeat_sd / math.sqrt(len(runs)) if repeat_sd is not None else None,
        cpu_only=cpu_only,
        telemetry_source=tel.source if tel else None,
        telemetry_samples=tel.samples if tel else None,
        gpu_util_pct=first.util_pct.mean if first and first.util_pct else None,
        sm_clock_mhz=first.sm_clock_mhz.mean if first and first.sm_clock_mhz else None,
        power_w=sum(g.power_w.mean for g in gpus if g.power_w) if any(g.power_w for g in gpus) else None,
        energy_j=energy,
        energy_j_per_img=(energy / images) if energy and images else None,
        peak_mem_bytes=sum(p for p in peaks if p) or None,
        mem_policy=(tel.memory_policy if tel else None) or res.knobs.get("memory"),
        cpu_pct=tel.cpu_pct.mean if tel and tel.cpu_pct else None,
        rss_peak_bytes=tel.rss_bytes_peak if tel else None,
        data_source=res.data_source,
        libraries=dict(res.fingerprint.libraries),
        flags=tuple(flags),
    )
    return Cell(**base)


# --- derived tables ------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What a reader needs to know about a machine (from its results' fingerprints)."""

    device_id: str
    host: str = ""
    os: str = ""
    cpu: str = ""
    cores: str = ""
    ram_bytes: int | None = None
    gpus: str = "none"
    driver: str = ""
    python: str = ""
    agent_version: str = ""
    tags: tuple[str, ...] = ()
    libraries: dict[str, dict[str, str]] = field(default_factory=dict)  # backend -> library -> version
    fingerprints: int = 0  # distinct fingerprints seen (hardware/OS); > 1 means the box changed

    @property
    def has_gpu(self) -> bool:
        return self.gpus != "none"


@dataclass(frozen=True)
class PivotRow:
    """A row of the study's table: one configuration, img/s per backend."""

    workload: str
    mode: str
    batch_size: int
    precision: str
    gpus: int
    cells: dict[str, Cell]  # backend -> cell


@dataclass(frozen=True)
class DeviceSection:
    device: DeviceInfo
    cells: list[Cell]
    pivot: list[PivotRow]
    backends: list[str]


@dataclass(frozen=True)
class FleetTable:
    """Devices x backends for one workload: each (device, backend) at its fastest configuration."""

    workload: str
    mode: str
    devices: list[str]
    backends: list[str]
    cells: dict[tuple[str, str], Cell]  # (device, backend) -> the fastest OK cell, else the latest failure
    notes: list[str]

    def winner(self, device: str) -> Cell | None:
        ok = [c for (d, _), c in self.cells.items() if d == device and c.ok]
        return max(ok, key=lambda c: c.img_per_s or 0.0) if ok else None

    def best_device(self, backend: str) -> Cell | None:
        ok = [c for (_, b), c in self.cells.items() if b == backend and c.ok]
        return max(ok, key=lambda c: c.img_per_s or 0.0) if ok else None

    def overall(self) -> Cell | None:
        ok = [c for c in self.cells.values() if c.ok]
        return max(ok, key=lambda c: c.img_per_s or 0.0) if ok else None


@dataclass(frozen=True)
class ScalingRow:
    gpus: int
    cell: Cell
    speedup: float | None  # img/s(N) / img/s(base N)
    efficiency_pct: float | None  # 100 * img/s(N) / (N/base * img/s(base))


@dataclass(frozen=True)
class ScalingTable:
    device_id: str
    workload: str
    mode: str
    backend: str
    batch_size: int
    precision: str
    base_gpus: int
    rows: list[ScalingRow]


@dataclass
class Report:
    baseline: str
    cells: list[Cell]
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    store_url: str = ""
    notes: list[str] = field(default_factory=list)
    utilisation_meaning: str = UTILISATION_MEANING
    timeseries: dict[tuple[str, str], TimeSeries] = field(default_factory=dict, repr=False)  # (device, job)

    # -- views ----------------------------------------------------------------------
    def groups(self) -> dict[tuple[str, str, str], list[Cell]]:
        out: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
        for c in self.cells:
            out[(c.device_id, c.workload, c.mode)].append(c)
        return dict(sorted(out.items()))

    @property
    def backends(self) -> list[str]:
        return _ordered_backends({c.backend for c in self.cells}, self.baseline)

    @property
    def workloads(self) -> list[tuple[str, str]]:
        """(workload label, mode) in catalogue order."""
        seen: dict[tuple[str, str], tuple[int, str]] = {}
        for c in self.cells:
            seen.setdefault((c.workload, c.mode), (_workload_rank(c.model, c.dataset), c.mode))
        return sorted(seen, key=lambda k: (seen[k], k[0]))

    def device_sections(self) -> list[DeviceSection]:
        out = []
        for device_id in sorted({c.device_id for c in self.cells}):
            cells = [c for c in self.cells if c.device_id == device_id]
            rows: dict[tuple[Any, ...], dict[str, Cell]] = defaultdict(dict)
            for c in cells:
                rows[(c.workload, c.mode, c.batch_size, c.precision, c.gpus, _workload_rank(c.model, c.dataset))][
                    c.backend] = c
            pivot = [PivotRow(k[0], k[1], k[2], k[3], k[4], v)
                     for k, v in sorted(rows.items(), key=lambda kv: (kv[0][5], kv[0][0], kv[0][1], kv[0][4],
                                                                       kv[0][3], kv[0][2]))]
            info = self.devices.get(device_id) or DeviceInfo(device_id)
            out.append(DeviceSection(info, cells, pivot, _ordered_backends({c.backend for c in cells},
                                                                           self.baseline)))
        return out

    def fleet_tables(self) -> list[FleetTable]:
        out = []
        devices = sorted({c.device_id for c in self.cells})
        for workload, mode in self.workloads:
            cells = [c for c in self.cells if c.workload == workload and c.mode == mode]
            chosen: dict[tuple[str, str], Cell] = {}
            for c in cells:
                key = (c.device_id, c.backend)
                prev = chosen.get(key)
                if prev is None or (c.ok and (not prev.ok or (c.img_per_s or 0) > (prev.img_per_s or 0))):
                    chosen[key] = c
            backends = _ordered_backends({c.backend for c in cells}, self.baseline)
            out.append(FleetTable(workload, mode, [d for d in devices if any(k[0] == d for k in chosen)],
                                  backends, chosen, _fleet_notes(list(chosen.values()))))
        return out

    def scaling_tables(self) -> list[ScalingTable]:
        groups: dict[tuple[Any, ...], list[Cell]] = defaultdict(list)
        for c in self.cells:
            if c.gpus >= 1:
                groups[(c.device_id, c.workload, c.mode, c.backend, c.batch_size, c.precision)].append(c)
        out = []
        for key, cells in sorted(groups.items()):
            counts = {c.gpus for c in cells}
            if len(counts) < 2:
                continue
            cells.sort(key=lambda c: c.gpus)
            base = next((c for c in cells if c.ok), None)
            rows = []
            for c in cells:
                if base is None or not c.ok or not base.img_per_s:
                    rows.append(ScalingRow(c.gpus, c, None, None))
                    continue
                speedup = (c.img_per_s or 0.0) / base.img_per_s
                rows.append(ScalingRow(c.gpus, c, speedup, 100.0 * speedup * base.gpus / c.gpus))
            device_id, workload, mode, backend, batch_size, precision = key
            out.append(ScalingTable(device_id, workload, mode, backend, batch_size, precision,
                                    base_gpus=base.gpus if base else cells[0].gpus, rows=rows))
        return out

    def timeseries_job(self, job_id: str | None = None) -> Cell | None:
        """The job whose time series the report shows: the one asked for (a unique prefix will
        do), else the first GPU job that has one, else the first job that has one."""
        with_ts = [c for c in self.cells if (c.device_id, c.job_id) in self.timeseries]
        if job_id:
            exact = [c for c in self.cells if c.job_id == job_id]
            found = exact or [c for c in self.cells if c.job_id.startswith(job_id)]
            return found[0] if len(found) == 1 or exact else None
        return next((c for c in with_ts if not c.cpu_only and c.ok), next((c for c in with_ts if c.ok), None))


def _workload_rank(model: str, dataset: str) -> int:
    order = list(WORKLOAD_NAMES)
    return order.index((model, dataset)) if (model, dataset) in order else len(order)


def _ordered_backends(backends: set[str], baseline: str) -> list[str]:
    """Baseline first, then the known order, then the rest alphabetically."""
    order = {b: i for i, b in enumerate(BASELINE_PREFERENCE)}
    return sorted(backends, key=lambda b: (b != baseline, order.get(b, len(order)), b))


def choose_baseline(rows: list[ResultRow], asked: str | None) -> str:
    if asked:
        return asked
    present = {r.backend for r in rows if r.outcome == "OK" and r.backend}
    return next((b for b in BASELINE_PREFERENCE if b in present), sorted(present)[0] if present else "")


def _fleet_notes(cells: list[Cell]) -> list[str]:
    """Why a row or column of the fleet view may not compare like with like."""
    notes = []
    ok = [c for c in cells if c.ok]
    precisions = sorted({c.precision for c in ok})
    if len(precisions) > 1:
        notes.append(f"different precision: {', '.join(precisions)}")
    sources = sorted({c.data_source for c in ok if c.data_source})
    if len(sources) > 1:
        notes.append("synthetic and real data mixed")
    batches = sorted({c.batch_size for c in ok})
    if len(batches) > 1:
        notes.append(f"fastest batch size differs per cell ({', '.join(map(str, batches))})")
    by_backend: dict[str, set[tuple[tuple[str, str], ...]]] = defaultdict(set)
    for c in ok:
        by_backend[c.backend].add(tuple(sorted(c.libraries.items())))
    for backend, versions in sorted(by_backend.items()):
        if len(versions) > 1:
            notes.append(f"{backend}: library versions differ between devices ({_version_diff(versions)})")
    return notes


def _version_diff(versions: set[tuple[tuple[str, str], ...]]) -> str:
    maps = [dict(v) for v in versions]
    names = sorted({k for m in maps for k in m if len({m.get(k) for m in maps}) > 1})
    return "; ".join(f"{n} {' vs '.join(sorted({m.get(n) or 'none' for m in maps}))}" for n in names)


def _flag_incomparable(cells: list[Cell]) -> list[Cell]:
    """Flag cells whose comparison partners differ in data source, or whose backend's
    library versions changed between the runs on one device."""
    out = list(cells)
    extra: dict[int, list[str]] = defaultdict(list)
    by_config: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    by_backend: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(out):
        by_config[(c.device_id, *c.config)].append(i)
        by_backend[(c.device_id, c.backend)].append(i)
    for idxs in by_config.values():
        sources = {out[i].data_source for i in idxs if out[i].data_source}
        if len(sources) > 1:
            for i in idxs:
                extra[i].append(f"{out[i].data_source} data")
    for idxs in by_backend.values():
        libs = {tuple(sorted(out[i].libraries.items())) for i in idxs if out[i].libraries}
        if len(libs) > 1:
            for i in idxs:
                extra[i].append("mixed library versions")
    for i, flags in extra.items():
        c = out[i]
        out[i] = Cell(**{**c.__dict__, "flags": c.flags + tuple(f for f in flags if f not in c.flags)})
    return out


def _device_info(device_id: str, results: list[Result], status: AgentStatus | None) -> DeviceInfo:
    if not results:
        return DeviceInfo(device_id, tags=tuple(status.tags) if status else (), host=status.host if status else "",
                          gpus=", ".join(g.name for g in status.gpus) if status and status.gpus else "none")
    fp = max(results, key=lambda r: r.finished_at).fingerprint
    libraries: dict[str, dict[str, str]] = {}
    for r in sorted(results, key=lambda r: r.finished_at):
        libraries[r.backend.value] = dict(r.fingerprint.libraries)
    hardware = {(r.fingerprint.host, r.fingerprint.cpu_model, r.fingerprint.ram_bytes,
                 tuple((g.name, g.driver) for g in r.fingerprint.gpus), r.fingerprint.os) for r in results}
    gpu_names: dict[str, int] = defaultdict(int)
    for g in fp.gpus:
        gpu_names[g.name] += 1
    gpus = ", ".join(f"{n}× {name}" if n > 1 else name for name, n in gpu_names.items()) or "none"
    first = fp.gpus[0] if fp.gpus else None
    return DeviceInfo(
        device_id=device_id, host=fp.host, os=fp.os, cpu=fp.cpu_model,
        cores=f"{fp.cpu_cores_physical or '?'}C/{fp.cpu_cores_logical}T", ram_bytes=fp.ram_bytes, gpus=gpus,
        driver=f"driver {first.driver}, CUDA {first.cuda}" if first and first.driver else "",
        python=fp.python, agent_version=fp.agent_version, tags=tuple(status.tags) if status else (),
        libraries=libraries, fingerprints=len(hardware),
    )


def _with_ratio(c: Cell, reference: float | None) -> Cell:
    ratio = c.img_per_s / reference if c.ok and c.img_per_s and reference else None
    return Cell(**{**c.__dict__, "ratio": ratio})


def build_report(
    rows: list[ResultRow],
    baseline: str | None = None,
    *,
    statuses: dict[str, AgentStatus] | None = None,
    selection: Selection | None = None,
    store_url: str = "",
) -> Report:
    """The latest attempt per (device, workload, mode, backend, batch, precision, gpus)."""
    latest: dict[tuple[Any, ...], ResultRow] = {}
    for r in sorted(rows, key=lambda r: (r.finished_at is None, r.finished_at)):
        if r.outcome in ("REJECTED", "CANCELED") or r.backend is None or r.model is None:
            continue
        key = (r.device_id, r.model, r.dataset, r.mode, r.backend, r.batch_size, r.precision, r.gpus,
               job_variant(r))
        latest[key] = r
    base_name = choose_baseline(list(latest.values()), baseline)
    parsed = {k: r.result() for k, r in latest.items()}
    cells = [make_cell(r, parsed[k], variant=k[-1]) for k, r in latest.items()]
    reference = {(c.device_id, *c.config): c.img_per_s for c in cells if c.backend == base_name and c.ok}
    cells = [_with_ratio(c, reference.get((c.device_id, *c.config))) for c in cells]
    cells.sort(key=lambda c: (c.device_id, _workload_rank(c.model, c.dataset), c.workload, c.mode, c.gpus,
                              c.precision, c.batch_size, c.backend != base_name, c.backend))
    cells = _flag_incomparable(cells)
    statuses = statuses or {}
    by_device: dict[str, list[Result]] = defaultdict(list)
    for res in parsed.values():
        if res is not None:
            by_device[res.device_id].append(res)
    devices = {d: _device_info(d, by_device.get(d, []), statuses.get(d)) for d in sorted({c.device_id for c in cells})}
    notes = []
    if base_name and not any(c.backend == base_name for c in cells):
        notes.append(f"baseline backend {base_name!r} has no results in this selection: no ratios")
    for d in devices.values():
        if d.fingerprints > 1:
            notes.append(f"{d.device_id}: results come from {d.fingerprints} different machine fingerprints")
    timeseries = {(res.device_id, res.job_id): res.timeseries for res in parsed.values()
                  if res is not None and res.timeseries is not None and res.timeseries.t_s}
    return Report(baseline=base_name, cells=cells, devices=devices, selection=selection or Selection(),
                  store_url=store_url, notes=notes, timeseries=timeseries)
