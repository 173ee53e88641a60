"""Comparison reports built from stored results: the views (renderers live in controller/render/).

Three steps, each in its own module: selection (controller/selection.py, the
store's read methods do the SQL), cells (controller/cells.py: one per
device x workload x backend x configuration, the latest attempt, with its
figure, interval and flags), and the views here: the 2019 study's tables per
device, a fleet view per workload, scaling tables, a roll-up per device
across workloads, energy efficiency, and which backend is fastest where the
intervals allow saying so. controller/render/tables.py turns the views into
format-neutral tables once; every renderer only adds markup.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from edgebench.controller.cells import (
    FEW_BATCHES,
    FEW_TELEMETRY_SAMPLES,
    NOISY_CI_REL,
    WORKLOAD_NAMES,
    Cell,
    job_variant,
    make_cell,
    workload_label,
    workload_rank,
)
from edgebench.controller.inference_report import InferenceRow
from edgebench.controller.inference_report import latest as latest_inference
from edgebench.controller.inference_report import rows as inference_rows
from edgebench.controller.machines import DeviceInfo, device_info
from edgebench.controller.ranking import Ranking, rank
from edgebench.controller.selection import Selection, SelectionError, parse_time, select, workload_keys
from edgebench.controller.stats import geometric_mean, t95
from edgebench.controller.store import ResultRow, ResultStore
from edgebench.schemas import AgentStatus, Result
from edgebench.schemas.telemetry import UTILISATION_MEANING, TimeSeries

__all__ = [
    "BASELINE_PREFERENCE", "FEW_BATCHES", "FEW_TELEMETRY_SAMPLES", "NOISY_CI_REL", "WORKLOAD_NAMES", "Cell",
    "DeviceInfo", "DeviceSection", "FleetTable", "PivotRow", "Ranking", "Report", "RollupTable", "ScalingRow",
    "ScalingTable", "Selection", "SelectionError", "build_report", "choose_baseline", "job_tags", "job_variant",
    "make_cell", "parse_time", "rank", "select", "t95", "workload_keys", "workload_label",
]

# Order in which a baseline is picked when none is given: the 2019 study's
# reference (Keras on TensorFlow) first, then the native framework.
BASELINE_PREFERENCE = ("keras-tensorflow", "torch", "keras-jax", "keras-torch", "keras-tensorflow1",
                       "keras-mxnet", "sleep")


def job_tags(store: ResultStore, rows: list[ResultRow]) -> dict[tuple[str, str], set[str]]:
    """Tags of each (job, device) from its dispatched spec (the store's read method)."""
    return store.job_tags((r.job_id, r.device_id) for r in rows)


# --- views ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PivotRow:
    """A row of the study's table: one configuration, img/s per backend."""

    workload: str
    mode: str
    batch_size: int
    precision: str
    gpus: int
    cells: dict[str, Cell]  # backend -> cell

    @property
    def ranking(self) -> Ranking:
        return rank(list(self.cells.values()))


@dataclass(frozen=True)
class DeviceSection:
    device: DeviceInfo
    cells: list[Cell]
    pivot: list[PivotRow]
    backends: list[str]


ChartConfig = tuple[int, str, int]  # batch size, precision (with knobs), GPUs


@dataclass(frozen=True)
class FleetTable:
    """Devices x backends for one workload.

    ``cells``: each (device, backend) at its fastest configuration (the table);
    ``chart_cells``: each at the one configuration ``chart_config``, the one
    most (device, backend) pairs ran, so that the chart's bars compare like
    with like and say which configuration in its title.
    """

    workload: str
    mode: str
    devices: list[str]
    backends: list[str]
    cells: dict[tuple[str, str], Cell]  # (device, backend) -> the fastest OK cell, else the latest failure
    notes: list[str]
    chart_config: ChartConfig | None = None
    chart_cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def ranking(self, device: str) -> Ranking:
        return rank([c for (d, _), c in self.cells.items() if d == device])

    def winner(self, device: str) -> Cell | None:
        """The fastest backend on a device where it is separable from the runner-up."""
        return self.ranking(device).winner

    def best_device(self, backend: str) -> Cell | None:
        return rank([c for (_, b), c in self.cells.items() if b == backend]).leader

    def overall(self) -> Cell | None:
        return rank(list(self.cells.values())).leader

    @property
    def chart_missing(self) -> list[tuple[str, str]]:
        """(device, backend) pairs in the table with no OK result at the chart's configuration."""
        return [k for k, c in sorted(self.cells.items()) if c.ok and k not in self.chart_cells]


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


@dataclass(frozen=True)
class RollupTable:
    """Per device and backend, the geometric mean over configurations of the ratio to the baseline."""

    baseline: str
    devices: list[str]
    backends: list[str]
    values: dict[tuple[str, str], tuple[float, int]]  # (device, backend) -> (geomean ratio, configurations)


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
    # LoadGen runs (controller/inference_report.py), shown in their own section, not as cells
    inference: list[InferenceRow] = field(default_factory=list)

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
            seen.setdefault((c.workload, c.mode), (workload_rank(c.model, c.dataset), c.mode))
        return sorted(seen, key=lambda k: (seen[k], k[0]))

    def device_sections(self) -> list[DeviceSection]:
        out = []
        for device_id in sorted({c.device_id for c in self.cells}):
            cells = [c for c in self.cells if c.device_id == device_id]
            rows: dict[tuple[Any, ...], dict[str, Cell]] = defaultdict(dict)
            for c in cells:
                rows[(c.workload, c.mode, c.batch_size, c.precision, c.gpus, workload_rank(c.model, c.dataset))][
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
            config = _chart_config(cells)
            at_config = {(c.device_id, c.backend): c for c in cells if c.ok and _config_key(c) == config}
            out.append(FleetTable(workload, mode, [d for d in devices if any(k[0] == d for k in chosen)],
                                  backends, chosen, _fleet_notes(list(chosen.values())), config, at_config))
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

    def rollup(self) -> RollupTable | None:
        """Geometric mean of each backend's ratios to the baseline across workloads, per device."""
        ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
        for c in self.cells:
            if c.ok and c.ratio and c.backend != self.baseline:
                ratios[(c.device_id, c.backend)].append(c.ratio)
        values = {k: (g, len(v)) for k, v in ratios.items() if (g := geometric_mean(v)) is not None}
        if not values:
            return None
        devices = sorted({d for d, _ in values})
        backends = [b for b in self.backends if any((d, b) in values for d in devices)]
        return RollupTable(self.baseline, devices, backends, values)

    def timeseries_job(self, job_id: str | None = None) -> Cell | None:
        """The job whose time series the report shows: the one asked for (a unique prefix will
        do), else the first GPU job that has one, else the first job that has one."""
        with_ts = [c for c in self.cells if (c.device_id, c.job_id) in self.timeseries]
        if job_id:
            exact = [c for c in self.cells if c.job_id == job_id]
            found = exact or [c for c in self.cells if c.job_id.startswith(job_id)]
            return found[0] if len(found) == 1 or exact else None
        return next((c for c in with_ts if not c.cpu_only and c.ok), next((c for c in with_ts if c.ok), None))


def _config_key(c: Cell) -> ChartConfig:
    # a CPU job (0 GPUs) and a 1-GPU job both use one device's worth: same configuration
    return (c.batch_size, c.precision, max(c.gpus, 1))


def _chart_config(cells: list[Cell]) -> ChartConfig | None:
    """The configuration most (device, backend) pairs ran OK; ties: the smallest batch size."""
    pairs: dict[ChartConfig, set[tuple[str, str]]] = defaultdict(set)
    for c in cells:
        if c.ok:
            pairs[_config_key(c)].add((c.device_id, c.backend))
    if not pairs:
        return None
    return min(pairs, key=lambda k: (-len(pairs[k]), k[0], k[2], k[1]))


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
    suspect = sorted({f"{c.device_id}/{c.backend}" for c in ok if c.suspect})
    if suspect:
        notes.append(f"suspect measurements (validity record): {', '.join(suspect)}")
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
        out[i] = out[i].with_flags(flags)
    return out


def _with_ratio(c: Cell, reference: float | None) -> Cell:
    ratio = c.img_per_s / reference if c.ok and c.img_per_s and reference else None
    return replace(c, ratio=ratio)


def _parse(row: ResultRow) -> Result | None:
    """A row's result, or None where it does not parse (a reader never crashes on one bad row)."""
    from pydantic import ValidationError

    try:
        return row.result()
    except (ValidationError, ValueError):
        return None


def build_report(
    rows: list[ResultRow],
    baseline: str | None = None,
    *,
    statuses: dict[str, AgentStatus] | None = None,
    selection: Selection | None = None,
    store_url: str = "",
    generated_at: datetime | None = None,
) -> Report:
    """The latest attempt per (device, workload, mode, backend, batch, precision, gpus, knobs)."""
    latest: dict[tuple[Any, ...], ResultRow] = {}
    skipped = 0
    loadgen: list[Result] = []
    for r in sorted(rows, key=lambda r: (r.finished_at is None, r.finished_at or datetime.min)):
        if r.outcome in ("REJECTED", "CANCELED"):
            continue
        if r.mode == "infer" and r.result_json:
            res = _parse(r)
            if res is not None and res.runs and res.runs[0].inference is not None:
                # a LoadGen scenario is not an img/s cell (SingleStream's figure is a latency): own section
                loadgen.append(res)
                continue
        if r.backend is None or r.model is None or r.dataset is None or r.batch_size is None \
                or r.precision is None or r.mode is None:
            skipped += 1  # a job whose spec the store never saw: nothing to place it under
            continue
        key = (r.device_id, r.model, r.dataset, r.mode, r.backend, r.batch_size, r.precision, r.gpus,
               job_variant(r))
        latest[key] = r
    base_name = choose_baseline(list(latest.values()), baseline)
    parsed = {k: _parse(r) for k, r in latest.items()}
    unparsed = sum(1 for k, r in latest.items() if r.result_json and parsed[k] is None)
    cells = [make_cell(r, parsed[k], variant=k[-1]) for k, r in latest.items()]
    reference = {(c.device_id, *c.config): c.img_per_s for c in cells if c.backend == base_name and c.ok}
    cells = [_with_ratio(c, reference.get((c.device_id, *c.config))) for c in cells]
    cells.sort(key=lambda c: (c.device_id, workload_rank(c.model, c.dataset), c.workload, c.mode, c.gpus,
                              c.precision, c.batch_size, c.backend != base_name, c.backend))
    cells = _flag_incomparable(cells)
    statuses = statuses or {}
    by_device: dict[str, list[Result]] = defaultdict(list)
    for res in [*parsed.values(), *loadgen]:
        if res is not None:
            by_device[res.device_id].append(res)
    shown = {c.device_id for c in cells} | {res.device_id for res in loadgen}
    devices = {d: device_info(d, by_device.get(d, []), statuses.get(d)) for d in sorted(shown)}
    notes = []
    if base_name and not any(c.backend == base_name for c in cells):
        notes.append(f"baseline backend {base_name!r} has no results in this selection: no ratios")
    for d in devices.values():
        if d.fingerprints > 1:
            notes.append(f"{d.device_id}: results come from {d.fingerprints} different machine fingerprints")
    if skipped:
        notes.append(f"{skipped} stored result(s) without a job description (backend, workload) are left out")
    if unparsed:
        notes.append(f"{unparsed} stored result(s) did not parse and show without figures")
    timeseries = {(res.device_id, res.job_id): res.timeseries for res in parsed.values()
                  if res is not None and res.timeseries is not None and res.timeseries.t_s}
    return Report(baseline=base_name, cells=cells, devices=devices, selection=selection or Selection(),
                  store_url=store_url, notes=notes, timeseries=timeseries,
                  generated_at=generated_at or datetime.now(timezone.utc),
                  inference=latest_inference(inference_rows(loadgen)))
