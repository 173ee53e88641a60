"""A report's cells: one backend x configuration on one device, with its figure, interval and flags.

The figure shown is the window img/s of the median repeat. The "±" beside it
is the half-width of a 95 % confidence interval of that throughput, from the
job's repeats when it ran two or more (Student t over the repeats' window
img/s), else from the runner's batch blocks inside the one window (Student t
over the blocks' img/s; blocks of one run share its conditions, so this
interval is narrower than run-to-run spread). A single run without blocks has
no interval, and says so. The ``noisy`` flag reads that same interval: it is
raised when the interval is wider than ``NOISY_CI_REL`` of the figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from edgebench.controller.facts import block_rates
from edgebench.controller.stats import mean_ci95
from edgebench.controller.store import ResultRow
from edgebench.schemas import Result

WORKLOAD_NAMES = {
    ("mlp", "fashion_mnist"): "Fashion-MNIST MLP",
    ("cnn", "fashion_mnist"): "Fashion-MNIST CNN",
    ("resnet56", "cifar10"): "CIFAR-10 ResNet-56",
    ("resnet50", "synthetic_imagenet"): "synthetic ResNet-50",
    ("resnet50", "imagenet"): "ImageNet ResNet-50",
}

# Thresholds for the flags.
NOISY_CI_REL = 0.10  # the 95 % interval's half-width exceeds 10 % of the figure
FEW_BATCHES = 20
FEW_TELEMETRY_SAMPLES = 10


def workload_label(model: str | None, dataset: str | None) -> str:
    return WORKLOAD_NAMES.get((model or "", dataset or ""), f"{dataset or '?'} {model or '?'}")


def workload_rank(model: str, dataset: str) -> int:
    order = list(WORKLOAD_NAMES)
    return order.index((model, dataset)) if (model, dataset) in order else len(order)


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
    precision: str  # the precision, plus the job's explicit knobs (" · channels_last · compiled")
    gpus: int
    outcome: str  # OK, OOM, FAILED, TIMED_OUT
    job_id: str
    finished_at: datetime | None = None
    reason: str | None = None
    # throughput: images / measured window of the median repeat
    img_per_s: float | None = None
    median_img_per_s: float | None = None  # per batch
    mean_img_per_s: float | None = None  # per batch
    batch_sd: float | None = None  # sd of per-batch img/s: jitter, not the uncertainty of img_per_s
    n_batches: int | None = None
    n_samples: int | None = None  # per-batch samples behind batch_sd (fewer than n_batches when pooled)
    window_s: float | None = None
    repeats: int = 0
    repeat_rates: tuple[float, ...] = ()  # window img/s of each repeat
    block_rates: tuple[float, ...] = ()  # img/s of the headline repeat's batch blocks
    repeat_sd: float | None = None  # sd of the repeats' window img/s
    repeat_min: float | None = None
    repeat_max: float | None = None
    ci95: float | None = None  # half-width of the 95 % interval of img_per_s (see the module doc)
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
    # where the framework itself says the job ran (Result.devices_used), e.g. "jax gpu: cuda:0"
    ran_on: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    # the validity record's verdict (None: recorded before it existed) and why
    verdict: str | None = None
    validity_reasons: tuple[str, ...] = ()
    validity_notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "OK" and self.img_per_s is not None

    @property
    def suspect(self) -> bool:
        return self.verdict == "suspect"

    @property
    def sd(self) -> float | None:
        """The repeats' standard deviation (None below 2 repeats)."""
        return self.repeat_sd

    @property
    def ci_basis(self) -> str:
        """What the interval is taken over: "3 repeats", "10 blocks of one run", or "-" for none."""
        if self.ci95 is None:
            return "-"
        if self.repeats >= 2:
            return f"{self.repeats} repeats"
        return f"{len(self.block_rates)} blocks of one run"

    @property
    def sd_basis(self) -> str:
        """What the per-batch jitter (batch_sd) is taken over."""
        if not self.n_batches:
            return "-"
        if self.n_samples is not None and self.n_samples != self.n_batches:
            return f"{self.n_samples} samples of {self.n_batches} batches"
        return f"{self.n_batches} batches"

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.ci95 is None or self.img_per_s is None:
            return None
        return (max(0.0, self.img_per_s - self.ci95), self.img_per_s + self.ci95)

    @property
    def img_per_j(self) -> float | None:
        """Images (or inferences) per joule: the inverse of energy per image."""
        return 1.0 / self.energy_j_per_img if self.energy_j_per_img else None

    @property
    def config(self) -> tuple[str, str, str, int, str, int]:
        """Everything but device and backend: what a comparison holds fixed."""
        return (self.model, self.dataset, self.mode, self.batch_size, self.precision, self.gpus)

    def with_flags(self, extra: list[str]) -> Cell:
        return replace(self, flags=self.flags + tuple(f for f in extra if f not in self.flags))


def job_variant(r: ResultRow) -> str:
    """Knobs the job set explicitly beyond precision (layout, compilation, input placement), as a label suffix.

    Part of a cell's identity, so that a knob sweep's configurations are not
    merged into one cell; shown beside the precision.
    """
    return variant_label(r.data_format, r.compiled, r.input_placement)


def variant_label(data_format: str | None, compiled: bool | None, input_placement: str | None = None) -> str:
    parts = []
    if data_format:
        parts.append(str(data_format))
    if compiled is not None:
        parts.append("compiled" if compiled else "eager")
    if input_placement:
        parts.append(f"input {input_placement}")
    return "".join(f" · {p}" for p in parts)


def ran_on_text(res: Result) -> str | None:
    """The framework's own account of its devices, short: ``jax gpu: cuda:0``; None before it was recorded."""
    used = res.devices_used
    if used is None:
        return None
    devices = ", ".join(used.devices[:8]) + (f" +{len(used.devices) - 8}" if len(used.devices) > 8 else "")
    return f"{used.framework} {used.kind}" + (f": {devices}" if devices else "")


def figure_ci95(repeats: list[float], blocks: list[float]) -> float | None:
    """Half-width of the 95 % interval of the figure: over repeats, else over one run's blocks."""
    if len(repeats) >= 2:
        return mean_ci95(repeats)
    if len(blocks) >= 2:
        return mean_ci95(blocks)
    return None


def make_cell(r: ResultRow, res: Result | None, variant: str = "") -> Cell:
    """variant: job_variant(r), computed once by the caller. Survives rows with missing fields."""
    base: dict[str, Any] = dict(
        device_id=r.device_id, workload=workload_label(r.model, r.dataset), model=r.model or "?",
        dataset=r.dataset or "?", mode=r.mode or "?", backend=r.backend or "?", batch_size=r.batch_size or 0,
        precision=(r.precision or "?") + variant, gpus=r.gpus or 0,
        outcome=r.outcome, job_id=r.job_id, finished_at=r.finished_at, reason=r.reason,
        cpu_only=(r.gpus or 0) == 0,
    )
    if res is None:
        return Cell(**base)
    runs = [run.throughput.window_img_per_s for run in res.runs]
    blocks = block_rates(res.summary)
    repeat_sd = statistics.stdev(runs) if len(runs) >= 2 else None
    ci95 = figure_ci95(runs, blocks)
    tel = res.telemetry
    gpus = tel.gpus if tel else []
    cpu_only = res.gpus == 0 or tel is None or tel.source == "none" or not gpus
    first = gpus[0] if gpus else None
    peaks = [g.process_mem_bytes_peak or g.mem_used_bytes_peak for g in gpus]
    # Energy covers every measured window (all repeats), so it is divided by
    # the images of all repeats, not by one repeat's.
    images = sum(run.throughput.images for run in res.runs)
    energy = tel.energy_j if tel else None
    validity = tel.validity if tel else None
    figure = res.summary.window_img_per_s
    flags = []
    if ci95 is not None and figure and ci95 / figure > NOISY_CI_REL:
        flags.append("noisy")
    if ci95 is None:
        flags.append("no interval")
    if res.summary.n_batches < FEW_BATCHES:
        flags.append("few batches")
    if tel is not None and not cpu_only and tel.samples < FEW_TELEMETRY_SAMPLES:
        flags.append("few samples")
    if validity is not None and validity.verdict == "suspect":
        flags.append("suspect")
    base.update(
        img_per_s=figure,
        median_img_per_s=res.summary.median_img_per_s,
        mean_img_per_s=res.summary.mean_img_per_s,
        batch_sd=res.summary.std_img_per_s,
        n_batches=res.summary.n_batches,
        n_samples=res.summary.n_samples,
        window_s=res.summary.window_s,
        repeats=len(runs),
        repeat_rates=tuple(runs),
        block_rates=tuple(blocks),
        repeat_sd=repeat_sd,
        repeat_min=min(runs) if runs else None,
        repeat_max=max(runs) if runs else None,
        ci95=ci95,
        cpu_only=cpu_only,
        telemetry_source=tel.source if tel else None,
        telemetry_samples=tel.samples if tel else None,
        gpu_util_pct=first.util_pct.mean if first and first.util_pct else None,
        sm_clock_mhz=first.sm_clock_mhz.mean if first and first.sm_clock_mhz else None,
        power_w=sum(g.power_w.mean for g in gpus if g.power_w) if any(g.power_w for g in gpus) else None,
        energy_j=energy,
        energy_j_per_img=(energy / images) if energy and images and math.isfinite(energy) else None,
        peak_mem_bytes=sum(p for p in peaks if p) or None,
        mem_policy=(tel.memory_policy if tel else None) or res.knobs.get("memory"),
        cpu_pct=tel.cpu_pct.mean if tel and tel.cpu_pct else None,
        rss_peak_bytes=tel.rss_bytes_peak if tel else None,
        data_source=res.data_source,
        ran_on=ran_on_text(res),
        libraries=dict(res.fingerprint.libraries),
        verdict=validity.verdict if validity else None,
        validity_reasons=tuple(validity.reasons) if validity else (),
        validity_notes=tuple(validity.notes) if validity else (),
        flags=tuple(flags),
    )
    return Cell(**base)
