"""Device groups and the cells of comparisons over many results (compare, history).

A device group is what makes two boxes' results comparable: the same GPU
model (or CPU model for CPU jobs), driver, image digest and power mode
(controller/facts.py derives each from a result). A comparison cell is a
device group x backend x workload x configuration.

Two ways to group, because a comparison must sometimes hold the software
fixed and sometimes look across it:

- ``hardware`` (the default of ``compare`` and ``report --history``): GPU model
  and power mode. A driver or image change stays inside the series, so that
  a regression it causes is found at the run where it happened, and the
  fingerprint difference names it.
- ``full``: GPU model, driver, image digest and power mode. Only identical
  stacks share a series; a driver or image change starts a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgebench.controller.cells import variant_label, workload_label
from edgebench.controller.store import FactRow


class GroupBy(str, Enum):
    hardware = "hardware"
    full = "full"
    device = "device"  # one box: the device id (and its hardware)


@dataclass(frozen=True, order=True)
class DeviceGroup:
    hardware: str
    power_mode: str = ""
    driver: str = ""  # "" where the grouping leaves it out, or none (CPU)
    image_digest: str = ""
    device_id: str = ""  # only when grouping by device

    def label(self) -> str:
        parts = [self.device_id] if self.device_id else []
        parts.append(self.hardware)
        if self.power_mode:
            parts.append(self.power_mode)
        if self.driver:
            parts.append(f"driver {self.driver}")
        if self.image_digest:
            parts.append(f"image {short_digest(self.image_digest)}")
        return " · ".join(parts)


def short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


@dataclass(frozen=True, order=True)
class CellKey:
    group: DeviceGroup
    model: str
    dataset: str
    mode: str
    backend: str
    batch_size: int
    precision: str  # with the job's explicit knobs (" · channels_last · compiled")
    gpus: int

    @property
    def workload(self) -> str:
        return workload_label(self.model, self.dataset)

    def config_label(self) -> str:
        text = f"bs {self.batch_size}, {self.precision}"
        return text + (f", {self.gpus} GPUs" if self.gpus > 1 else "")

    def label(self) -> str:
        mode = "" if self.mode == "train" else f" · {self.mode}"
        return f"{self.workload}{mode} · {self.backend} · {self.config_label()}"


def group_of(row: FactRow, by: GroupBy) -> DeviceGroup:
    hardware = row.hardware or "unknown"
    power = row.power_mode or ""
    if by is GroupBy.hardware:
        return DeviceGroup(hardware, power)
    if by is GroupBy.device:
        return DeviceGroup(hardware, power, device_id=row.device_id)
    return DeviceGroup(hardware, power, row.driver or "", row.image_digest or "")


def key_of(row: FactRow, by: GroupBy) -> CellKey | None:
    """The row's cell; None for a row without a job description (nothing to place it under)."""
    if row.backend is None or row.model is None or row.dataset is None or row.mode is None \
            or row.batch_size is None or row.precision is None:
        return None
    return CellKey(group_of(row, by), row.model, row.dataset, row.mode, row.backend, row.batch_size,
                   row.precision + variant_label(row.data_format, row.compiled, row.input_placement), row.gpus or 0)


def group_rows(rows: list[FactRow], by: GroupBy) -> dict[CellKey, list[FactRow]]:
    """Rows by cell (rows without a job description left out), each cell's rows in the given order.

    Keys are plain tuples first and become CellKeys once per cell: at 100,000 rows, building a
    frozen dataclass per row took 2.6 s of a history's 19 (benchmarks/report_scale.py)."""
    raw: dict[tuple[object, ...], list[FactRow]] = {}
    for r in rows:
        if r.backend is None or r.model is None or r.dataset is None or r.mode is None \
                or r.batch_size is None or r.precision is None:
            continue
        group = (r.hardware, r.power_mode) if by is GroupBy.hardware else \
            (r.hardware, r.power_mode, r.device_id) if by is GroupBy.device else \
            (r.hardware, r.power_mode, r.driver, r.image_digest)
        k = (group, r.model, r.dataset, r.mode, r.backend, r.batch_size, r.precision, r.data_format, r.compiled,
             r.input_placement, r.gpus)
        raw.setdefault(k, []).append(r)
    out: dict[CellKey, list[FactRow]] = {}
    for members in raw.values():
        key = key_of(members[0], by)
        assert key is not None
        out.setdefault(key, []).extend(members)
    return out
