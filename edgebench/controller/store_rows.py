"""What the results store's readers return: one row per stored result, dead letter, open job or fact."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from edgebench.schemas import JobSpec, JobState, Result


@dataclass(frozen=True)
class ResultRow:
    """One stored result (or failure). The descriptive columns are None only in rows
    written before unsolicited events were kept apart (a reader must survive them)."""

    job_id: str
    device_id: str
    attempt: int
    sweep_id: str | None
    state: str
    outcome: str
    backend: str | None
    mode: str | None
    model: str | None
    dataset: str | None
    batch_size: int | None
    precision: str | None
    gpus: int | None
    data_format: str | None
    compiled: bool | None
    img_per_s: float | None
    img_per_s_std: float | None
    error_type: str | None
    reason: str | None
    finished_at: datetime | None
    result_json: str | None
    input_placement: str | None = None

    def result(self) -> Result | None:
        return Result.from_stored_json(self.result_json) if self.result_json else None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_at: datetime | None
    topic: str | None
    device_id: str | None
    job_id: str | None
    reason: str
    payload: bytes | None


@dataclass(frozen=True)
class OpenJob:
    """A dispatched job that has not ended (reconciliation's candidates)."""

    job_id: str
    device_id: str
    state: JobState
    spec: JobSpec
    updated_at: datetime | None
    reconciled_at: datetime | None


@dataclass(frozen=True)
class Redispatch:
    """A job to send again: its agent answered that it never received it."""

    device_id: str
    job: JobSpec


class FactRow(NamedTuple):
    """One result as comparisons read it: the cell's identity, the figure, the device group, the samples.

    A named tuple, not a dataclass, and ``stats`` parsed on demand: comparisons build 100,000 of
    them, and a history needs the figure alone."""

    job_id: str
    device_id: str
    attempt: int
    sweep_id: str | None
    outcome: str
    backend: str | None
    mode: str | None
    model: str | None
    dataset: str | None
    batch_size: int | None
    precision: str | None
    gpus: int | None
    img_per_s: float | None
    finished_at: datetime | None
    data_format: str | None
    compiled: bool | None
    hardware: str | None
    driver: str | None
    image_digest: str | None
    power_mode: str | None
    verdict: str | None
    stats_json: str | None
    input_placement: str | None = None

    @property
    def stats(self) -> dict[str, Any]:
        """The repeats' and blocks' img/s, suspect reasons, images, energy (controller/facts.py)."""
        if not self.stats_json:
            return {}
        try:
            doc = json.loads(self.stats_json)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime | None) -> datetime | None:
    """SQLite returns stored UTC times without their zone."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t
