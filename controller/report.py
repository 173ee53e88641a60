"""Comparison reports built from stored results (renderers in controller/render/)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from controller.store import ResultRow

WORKLOAD_NAMES = {
    ("mlp", "fashion_mnist"): "Fashion-MNIST MLP",
    ("cnn", "fashion_mnist"): "Fashion-MNIST CNN",
    ("resnet56", "cifar10"): "CIFAR-10 ResNet-56",
    ("resnet50", "synthetic_imagenet"): "synthetic ResNet-50",
    ("resnet50", "imagenet"): "ImageNet ResNet-50",
}


def workload_label(model: str, dataset: str) -> str:
    return WORKLOAD_NAMES.get((model, dataset), f"{dataset} {model}")


@dataclass(frozen=True)
class Cell:
    """One backend x configuration on one device and workload."""

    device_id: str
    workload: str
    mode: str
    backend: str
    batch_size: int
    precision: str
    gpus: int
    outcome: str
    img_per_s: float | None  # images / measured window
    median_img_per_s: float | None  # per-batch
    std_img_per_s: float | None  # per-batch
    repeats: int
    repeat_min: float | None
    repeat_max: float | None
    n_batches: int | None
    data_source: str | None
    ratio: float | None  # img/s over the baseline backend's, same device/workload/config
    gpu_util_pct: float | None
    sm_clock_mhz: float | None
    power_w: float | None
    peak_mem_bytes: int | None
    energy_j_per_img: float | None
    job_id: str
    libraries: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass
class Report:
    baseline: str
    cells: list[Cell]

    def groups(self) -> dict[tuple[str, str, str], list[Cell]]:
        out: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
        for c in self.cells:
            out[(c.device_id, c.workload, c.mode)].append(c)
        return dict(sorted(out.items()))


def build_report(rows: list[ResultRow], baseline: str) -> Report:
    # latest result per (device, workload, mode, backend, batch, precision, gpus)
    latest: dict[tuple[Any, ...], ResultRow] = {}
    for r in sorted(rows, key=lambda r: (r.finished_at is None, r.finished_at)):
        if r.outcome in ("REJECTED", "CANCELED") or r.backend is None:
            continue
        key = (r.device_id, r.model, r.dataset, r.mode, r.backend, r.batch_size, r.precision, r.gpus)
        latest[key] = r
    base: dict[tuple[Any, ...], float] = {}
    for key, r in latest.items():
        if r.backend == baseline and r.img_per_s:
            base[(key[0], key[1], key[2], key[3], key[5], key[6], key[7])] = r.img_per_s
    cells = []
    for key, r in latest.items():
        ref = base.get((key[0], key[1], key[2], key[3], key[5], key[6], key[7]))
        cells.append(_cell(r, (r.img_per_s / ref) if (ref and r.img_per_s) else None))
    cells.sort(key=lambda c: (c.device_id, c.workload, c.mode, c.batch_size, c.precision, c.backend))
    _flag_incomparable(cells)
    return Report(baseline=baseline, cells=cells)


def _cell(r: ResultRow, ratio: float | None) -> Cell:
    res = r.result()
    tel = res.telemetry if res else None
    gpu = tel.gpus[0] if tel and tel.gpus else None
    peak = None
    if tel and tel.gpus:
        peaks = [g.process_mem_bytes_peak or g.mem_used_bytes_peak for g in tel.gpus]
        peak = sum(p for p in peaks if p) or None
    flags = []
    if res and res.summary.n_batches and res.summary.n_batches < 20:
        flags.append("few batches")
    if res and res.summary.std_img_per_s / max(res.summary.mean_img_per_s, 1e-9) > 0.25:
        flags.append("noisy")
    if res and res.data_source == "synthetic" and res.workload.dataset != "synthetic_imagenet":
        flags.append("synthetic data")
    return Cell(
        device_id=r.device_id,
        workload=workload_label(r.model, r.dataset),
        mode=r.mode,
        backend=r.backend,
        batch_size=r.batch_size,
        precision=r.precision,
        gpus=r.gpus,
        outcome=r.outcome,
        img_per_s=r.img_per_s,
        median_img_per_s=res.summary.median_img_per_s if res else None,
        std_img_per_s=r.img_per_s_std,
        repeats=res.repeat_spread.n if res else 0,
        repeat_min=res.repeat_spread.min_img_per_s if res else None,
        repeat_max=res.repeat_spread.max_img_per_s if res else None,
        n_batches=res.summary.n_batches if res else None,
        data_source=res.data_source if res else None,
        ratio=ratio,
        gpu_util_pct=gpu.util_pct.mean if gpu and gpu.util_pct else None,
        sm_clock_mhz=gpu.sm_clock_mhz.mean if gpu and gpu.sm_clock_mhz else None,
        power_w=gpu.power_w.mean if gpu and gpu.power_w else None,
        peak_mem_bytes=peak,
        energy_j_per_img=(1.0 / tel.img_per_j) if tel and tel.img_per_j else None,
        job_id=r.job_id,
        libraries=dict(res.fingerprint.libraries) if res else {},
        flags=tuple(flags),
    )


def _flag_incomparable(cells: list[Cell]) -> None:
    """Mark cells whose comparison partners differ in library versions or data source."""
    by_group: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        by_group[(c.device_id, c.workload, c.mode, c.backend)].append(i)
    for idxs in by_group.values():
        libs = {tuple(sorted(cells[i].libraries.items())) for i in idxs if cells[i].libraries}
        sources = {cells[i].data_source for i in idxs if cells[i].data_source}
        extra = []
        if len(libs) > 1:
            extra.append("mixed library versions")
        if len(sources) > 1:
            extra.append("mixed real/synthetic data")
        if extra:
            for i in idxs:
                c = cells[i]
                object.__setattr__(c, "flags", c.flags + tuple(extra))
