"""``controller report --history``: each cell of each device group over time, and its regressions.

A series is one cell's OK runs, oldest first (controller/groups.py says what
a cell and a device group are). Regressions are level shifts found by
binary segmentation (controller/stats.py ``change_points``): a split is kept
where at least ``MIN_BEFORE`` runs precede it and ``MIN_AFTER`` follow, the
two sides differ by a Mann-Whitney p below ``ALPHA`` and by at least
``MIN_EFFECT``. A shift down is a regression, with its first bad run and what
changed in the fingerprint between the last run before it and that run
(driver, library versions, image, kernel, agent); a shift up an improvement.

Why change points and not a z-score of the latest run against the last N
(conbench's way): a z-score flags single outliers (one run beside a
backup job) and needs many runs to estimate its sd (Bencher advises >= 30);
a level shift confirmed by several runs on each side is what a team can act
on, and it names the first bad run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from edgebench.controller.bulk import gc_paused
from edgebench.controller.groups import CellKey, DeviceGroup, GroupBy, group_rows
from edgebench.controller.stats import change_points
from edgebench.controller.store import FactRow, ResultStore
from edgebench.schemas import Result

MIN_BEFORE = 5
MIN_AFTER = 3
ALPHA = 0.01
MIN_EFFECT = 0.05  # a 5 % shift: below that, run-to-run noise on shared boxes (docs/PERFORMANCE.md)


class Run(NamedTuple):
    """One run of a series (a named tuple: a history of 100,000 runs builds one each)."""

    job_id: str
    device_id: str
    attempt: int
    finished_at: datetime | None
    img_per_s: float
    verdict: str | None
    driver: str | None
    image_digest: str | None


@dataclass(frozen=True)
class Shift:
    key: CellKey
    index: int  # position of the first run at the new level
    first: Run  # the first run at the new level
    last_before: Run
    ratio: float  # new level / old level (Hodges-Lehmann)
    p: float
    changes: tuple[str, ...] = ()  # fingerprint differences between last_before and first

    @property
    def regression(self) -> bool:
        return self.ratio < 1.0


@dataclass(frozen=True)
class Series:
    key: CellKey
    runs: tuple[Run, ...]
    shifts: tuple[Shift, ...]

    @property
    def latest(self) -> Run:
        return self.runs[-1]


@dataclass
class History:
    group_by: GroupBy
    series: list[Series] = field(default_factory=list)
    excluded_suspect: int = 0

    @property
    def groups(self) -> list[DeviceGroup]:
        return sorted({s.key.group for s in self.series})

    def shifts(self) -> list[Shift]:
        return [sh for s in self.series for sh in s.shifts]

    def regressions(self) -> list[Shift]:
        return [sh for sh in self.shifts() if sh.regression]


def _run(r: FactRow) -> Run:
    return Run(r.job_id, r.device_id, r.attempt, r.finished_at, float(r.img_per_s or 0.0), r.verdict, r.driver,
               r.image_digest)


def build_history(rows: list[FactRow], *, group_by: GroupBy = GroupBy.hardware, exclude_suspect: bool = False,
                  min_before: int = MIN_BEFORE, min_after: int = MIN_AFTER, alpha: float = ALPHA,
                  min_effect: float = MIN_EFFECT) -> History:
    """Series per cell (rows oldest first, as ResultStore.select_facts returns them) and their shifts."""
    with gc_paused():
        return _build_history(rows, group_by, exclude_suspect, min_before, min_after, alpha, min_effect)


def _build_history(rows: list[FactRow], group_by: GroupBy, exclude_suspect: bool, min_before: int,
                   min_after: int, alpha: float, min_effect: float) -> History:
    kept = [r for r in rows if r.img_per_s and r.img_per_s > 0]
    excluded = 0
    if exclude_suspect:
        before = len(kept)
        kept = [r for r in kept if r.verdict != "suspect"]
        excluded = before - len(kept)
    grouped = group_rows(kept, group_by)
    out = History(group_by, excluded_suspect=excluded)
    for key in sorted(grouped):
        runs = tuple(_run(r) for r in sorted(grouped[key], key=lambda r: (r.finished_at is None, r.finished_at
                                                                          or datetime.min, r.job_id)))
        found = change_points([r.img_per_s for r in runs], min_before=min_before, min_after=min_after,
                              alpha=alpha, min_effect=min_effect)
        shifts = tuple(Shift(key, c.index, runs[c.index], runs[c.index - 1], c.ratio, c.p) for c in found)
        out.series.append(Series(key, runs, shifts))
    return out


def fingerprint_changes(before: Result | None, after: Result | None) -> tuple[str, ...]:
    """What differs between two results' machines and stacks: driver, image, libraries, kernel, agent."""
    if before is None or after is None:
        return ("fingerprint unavailable",)
    a, b = before.fingerprint, after.fingerprint
    out = []

    def diff(name: str, x: object, y: object) -> None:
        if x != y:
            out.append(f"{name} {x or 'none'} -> {y or 'none'}")

    ga, gb = (a.gpus[0] if a.gpus else None), (b.gpus[0] if b.gpus else None)
    diff("GPU", ga.name if ga else None, gb.name if gb else None)
    diff("driver", ga.driver if ga else None, gb.driver if gb else None)
    diff("CUDA", ga.cuda if ga else None, gb.cuda if gb else None)
    diff("image", a.container_image, b.container_image)
    diff("image digest", a.container_digest, b.container_digest)
    for lib in sorted(set(a.libraries) | set(b.libraries)):
        diff(lib, a.libraries.get(lib), b.libraries.get(lib))
    diff("kernel", a.kernel, b.kernel)
    diff("OS", a.os, b.os)
    diff("Python", a.python, b.python)
    diff("agent", a.agent_version, b.agent_version)
    diff("device", before.device_id, after.device_id)
    diff("host", a.host, b.host)
    return tuple(out) or ("no fingerprint difference: same software; look at the validity record and the box",)


def explain(history: History, store: ResultStore) -> History:
    """Fill each shift's fingerprint differences (reads two full results per shift)."""
    from pydantic import ValidationError

    def result(run: Run) -> Result | None:
        rows = [r for r in store.results(job_id=run.job_id, device_id=run.device_id) if r.attempt == run.attempt]
        try:
            return rows[0].result() if rows else None
        except (ValidationError, ValueError):
            return None

    out = History(history.group_by, excluded_suspect=history.excluded_suspect)
    for s in history.series:
        shifts = tuple(Shift(sh.key, sh.index, sh.first, sh.last_before, sh.ratio, sh.p,
                             fingerprint_changes(result(sh.last_before), result(sh.first))) for sh in s.shifts)
        out.series.append(Series(s.key, s.runs, shifts))
    return out
