"""Number formatting and the definition of each cell column, shared by every table.

One definition of each column (header, unit, how a value is formatted, the
n/a rule for GPU metrics of CPU-only results) keeps every output showing the
same numbers: tables show ``Column.text(cell)``; the CSV writes
``Column.value(cell)`` unformatted, and ``Column.fmt`` of that value gives
back the shown text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from edgebench.controller.cells import FEW_BATCHES, FEW_TELEMETRY_SAMPLES, NOISY_CI_REL, Cell
from edgebench.controller.report import PivotRow, Report

NA = "n/a"  # does not apply (a CPU-only result has no GPU utilisation)
MISSING = "–"  # applies, but was not measured / not reported
GIB = 1024**3


def fmt_rate(value: float | None, std: float | None = None) -> str:
    """img/s: no decimals from 100 up, one below; ``± std`` in the same style."""
    if value is None:
        return MISSING
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    if std is not None:
        text += f" ± {fmt_sd(std)}"
    return text


def fmt_sd(std: float | None) -> str:
    if std is None:
        return MISSING
    return f"{std:,.0f}" if std >= 10 else f"{std:,.1f}"


def fmt_ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}×"


def fmt_num(value: float | None, digits: int = 0) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def fmt_gib(value: float | None) -> str:
    return MISSING if value is None else f"{value / GIB:,.2f}"


def fmt_mj(value_j: float | None) -> str:
    """Energy per image, shown in millijoules (edge workloads spend mJ per image)."""
    if value_j is None:
        return MISSING
    mj = value_j * 1000
    return f"{mj:,.0f}" if mj >= 100 else f"{mj:,.2f}" if mj < 10 else f"{mj:,.1f}"


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return MISSING
    for unit, size in (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,} B"


def outcome_text(cell: Cell) -> str:
    """What a failed cell shows instead of a number: OOM as the 2019 study's "Out of Memory"."""
    return {"OOM": "OOM", "TIMED_OUT": "timed out", "FAILED": "failed"}.get(cell.outcome, cell.outcome)


@dataclass(frozen=True)
class Column:
    key: str  # CSV / JSON name (units in the name)
    header: str  # table heading
    get: Callable[[Cell], object]
    fmt: Callable[[object], str] = str
    numeric: bool = True
    gpu: bool = False  # a GPU metric: "n/a" for CPU-only results
    suffix: Callable[[Cell], str] | None = None  # a marker after the text (see LEGEND_MARKS)

    def value(self, cell: Cell) -> object:
        return self.get(cell)

    def text(self, cell: Cell) -> str:
        if not cell.ok and self.key not in IDENTITY_KEYS:
            return outcome_text(cell) if self.key == "img_per_s" else ""
        if self.gpu and cell.cpu_only:
            return NA
        value = self.get(cell)
        if value is None:
            return MISSING
        return self.fmt(value) + (self.suffix(cell) if self.suffix else "")


def _f(fn: Callable[[float | None], str]) -> Callable[[object], str]:
    return lambda v: fn(v if isinstance(v, (int, float)) else None)


PREALLOC_MARK = " †"
PREALLOC_MEANING = ("† the backend preallocates GPU memory (its allocation policy is in the JSON output): "
                    "the peak is what it reserved, not what the model needed")


def preallocates(cell: Cell) -> bool:
    policy = (cell.mem_policy or "").lower()
    return "preallocat" in policy and "false" not in policy


IDENTITY = [
    Column("device", "device", lambda c: c.device_id, numeric=False),
    Column("workload", "workload", lambda c: cell_label(c), numeric=False),
    Column("mode", "mode", lambda c: c.mode, numeric=False),
    Column("backend", "backend", lambda c: c.backend, numeric=False),
    Column("batch_size", "batch", lambda c: c.batch_size),
    Column("precision", "prec.", lambda c: c.precision, numeric=False),
    Column("gpus", "GPUs", lambda c: c.gpus),
    Column("outcome", "outcome", lambda c: c.outcome, numeric=False),
]
IDENTITY_KEYS = {c.key for c in IDENTITY}

def fmt_per_j(value: float | None) -> str:
    """Images (or inferences) per joule."""
    if value is None:
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 1 else f"{value:,.3f}"


MEASURES = [
    Column("img_per_s", "img/s", lambda c: c.img_per_s, _f(fmt_rate)),
    Column("img_per_s_ci95", "± 95 % CI", lambda c: c.ci95, _f(fmt_sd)),
    Column("ci_basis", "CI over", lambda c: c.ci_basis, numeric=False),
    Column("ratio", "× baseline", lambda c: c.ratio, _f(fmt_ratio)),
    Column("img_per_s_repeat_sd", "repeat sd", lambda c: c.repeat_sd, _f(fmt_sd)),
    Column("median_batch_img_per_s", "batch median", lambda c: c.median_img_per_s, _f(fmt_rate)),
    Column("batch_sd_img_per_s", "batch jitter sd", lambda c: c.batch_sd, _f(fmt_sd)),
    Column("gpu_util_pct", "GPU util %", lambda c: c.gpu_util_pct, _f(lambda v: fmt_num(v, 0)), gpu=True),
    Column("sm_clock_mhz", "SM MHz", lambda c: c.sm_clock_mhz, _f(lambda v: fmt_num(v, 0)), gpu=True),
    Column("power_w", "power W", lambda c: c.power_w, _f(lambda v: fmt_num(v, 0)), gpu=True),
    Column("energy_j_per_img", "mJ/img", lambda c: c.energy_j_per_img, _f(fmt_mj), gpu=True),
    Column("img_per_j", "img/J", lambda c: c.img_per_j, _f(fmt_per_j), gpu=True),
    Column("peak_gpu_mem_bytes", "peak GPU GiB", lambda c: c.peak_mem_bytes, _f(fmt_gib), gpu=True,
           suffix=lambda c: PREALLOC_MARK if preallocates(c) else ""),
    Column("cpu_pct", "CPU %", lambda c: c.cpu_pct, _f(lambda v: fmt_num(v, 0))),
    Column("rss_peak_bytes", "RSS GiB", lambda c: c.rss_peak_bytes, _f(fmt_gib)),
    Column("ran_on", "ran on", lambda c: c.ran_on, numeric=False),
    Column("verdict", "validity", lambda c: c.verdict or MISSING, numeric=False),
    Column("flags", "flags", lambda c: ", ".join(c.flags), numeric=False),
]

# The per-device detail table (the device is the section's heading; the CSV has every column).
DETAIL_KEYS = ("workload", "backend", "batch_size", "precision", "gpus", "img_per_s", "img_per_s_ci95",
               "ci_basis", "ratio", "gpu_util_pct", "sm_clock_mhz", "power_w", "energy_j_per_img",
               "peak_gpu_mem_bytes", "cpu_pct", "ran_on", "flags")
DETAIL = [c for k in DETAIL_KEYS for c in (*IDENTITY, *MEASURES) if c.key == k]


def detail_columns(cells: list[Cell]) -> list[Column]:
    """DETAIL, narrowed: no GPU-count column where every cell runs on 0 or 1 GPU, and the basis of
    the interval in the interval's heading where every cell has the same one."""
    multi = any(c.gpus > 1 for c in cells)
    bases = {c.ci_basis for c in cells if c.ok}
    out = []
    for col in DETAIL:
        if col.key == "gpus" and not multi:
            continue
        if col.key == "ci_basis" and len(bases) == 1:
            continue
        if col.key == "img_per_s_ci95" and len(bases) == 1:
            col = dataclasses.replace(col, header=f"± 95 % CI ({next(iter(bases))})")
        out.append(col)
    return out


def cell_label(cell: Cell) -> str:
    return section_title(cell.workload, cell.mode)
# The report's CSV: every column, one row per cell.
CSV_COLUMNS = [*IDENTITY, *MEASURES, Column("job_id", "job", lambda c: c.job_id, numeric=False)]


def csv_value(col: Column, cell: Cell) -> str:
    """Unformatted (full-precision) CSV field; GPU metrics of CPU-only results are empty."""
    if col.gpu and cell.cpu_only:
        return ""
    if not cell.ok and col.key not in IDENTITY_KEYS and col.key != "job_id":
        return ""
    value = col.value(cell)
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def pivot_text(cell: Cell | None) -> str:
    """A cell of the study's table: ``img/s ± CI`` or the failure."""
    if cell is None:
        return ""
    if not cell.ok:
        return outcome_text(cell)
    return fmt_rate(cell.img_per_s, cell.ci95)


def config_text(cell: Cell) -> str:
    """A cell's configuration in a cell of a table that mixes configurations: "bs 32" or "bs 32, bf16"."""
    return f"bs {cell.batch_size}" + ("" if cell.precision == "fp32" else f", {cell.precision}")


FLAG_MEANINGS = {
    "noisy": f"the 95 % interval of img/s is wider than ±{NOISY_CI_REL:.0%} of the figure",
    "no interval": "one run without batch blocks: no confidence interval (run --repeats 3 or more)",
    "few batches": f"fewer than {FEW_BATCHES} batches in the measured window",
    "few samples": f"fewer than {FEW_TELEMETRY_SAMPLES} telemetry samples in the measured window: GPU "
                   "figures are rough",
    "suspect": "the validity record found something that may have disturbed the measurement (see Validity)",
    "synthetic data": "random data where a comparison partner read real files",
    "real data": "real files where a comparison partner used random data",
    "mixed library versions": "this backend's library versions changed between runs on this device",
}


def section_title(workload: str, mode: str) -> str:
    return workload if mode == "train" else f"{workload} · {mode}"


SHORT_WORKLOADS = {
    "Fashion-MNIST MLP": "MLP",
    "Fashion-MNIST CNN": "CNN",
    "CIFAR-10 ResNet-56": "ResNet-56",
    "synthetic ResNet-50": "ResNet-50\nsynthetic",
    "ImageNet ResNet-50": "ResNet-50\nImageNet",
}


def short_workload(workload: str, mode: str) -> str:
    """A chart axis label: the model alone where the catalogue makes it unambiguous."""
    text = SHORT_WORKLOADS.get(workload, workload)
    return text if mode == "train" else f"{text} ({mode})"


def chart_config_label(row: PivotRow) -> str:
    """pivot_label, compact enough for a chart's axis."""
    text = f"bs {row.batch_size}"
    if row.precision != "fp32":
        text += f" {row.precision}"
    if row.gpus > 1:
        text += f" {row.gpus}×GPU"
    return text


def pivot_label(row: PivotRow) -> str:
    text = f"bs {row.batch_size}"
    if row.precision != "fp32":
        text += f" · {row.precision}"
    if row.gpus > 1:
        text += f" · {row.gpus} GPUs"
    return text


def per_j_unit(mode: str) -> str:
    return "inferences/J" if mode == "infer" else "img/J"


def header_facts(report: Report) -> list[tuple[str, str]]:
    """The selection and provenance shown at the top of every format."""
    backends = report.backends
    facts = [
        ("selection", report.selection.describe()),
        ("generated", f"{report.generated_at:%Y-%m-%d %H:%M} UTC"),
        ("results", f"{len(report.cells)} on {len(report.devices)} device(s), {len(backends)} backend(s)"),
        ("baseline", report.baseline or MISSING),
    ]
    if report.store_url:
        facts.append(("store", report.store_url))
    return facts
