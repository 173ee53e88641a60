"""``controller compare``: two sets of results, cell by cell, with significance.

Each side is a selection (a sweep, a tag, a time range) in a store, maybe
another store. Within a side, a cell (controller/groups.py) holds every OK
result of that device group x backend x workload x configuration. Per cell:

- samples: the cell's runs (each result's figure) when both sides have at
  least ``MIN_RUNS`` of them; else the repeats of every result, pooled; else
  the runner's batch blocks, pooled. Both sides use the same kind where they
  can; the basis column says which;
- the ratio candidate / baseline (the Hodges-Lehmann estimate: the median of
  all pairwise ratios) with its distribution-free 95 % interval, and the
  two-sided Mann-Whitney p (controller/stats.py says why this and not a
  bootstrap);
- a verdict: ``faster`` or ``slower`` where p < alpha and the interval
  excludes 1, ``no change`` otherwise, ``too few samples`` where the sample
  sizes cannot reach p < alpha at all (3 against 3 never can).

``paired``: for interleaved runs (baseline, candidate, baseline, ... on the
same boxes), the i-th baseline run of a cell is paired with its i-th
candidate run in time order, and the test is the Wilcoxon signed-rank test
of the pairs' log ratios. The machine's load, which varies from pair to
pair, then cancels: on the project's shared 2-vCPU box runs of one job vary
100-fold, and no unpaired test can see a 15 % change through that.

``--fail-on-regression PCT`` fails when any cell is ``slower`` by more than
PCT % (the estimate, not its bound).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from edgebench.controller.bulk import gc_paused
from edgebench.controller.errors import ControllerUsageError
from edgebench.controller.groups import CellKey, GroupBy, group_rows
from edgebench.controller.selection import Selection, SelectionError, parse_time, select_facts
from edgebench.controller.stats import RatioEstimate, paired_ratio_estimate, ratio_estimate
from edgebench.controller.store import FactRow, ResultStore

# Both sides need this many runs of a cell before runs (not repeats) are the samples.
MIN_RUNS = 4
ALPHA = 0.05

Verdict = Literal["faster", "slower", "no change", "too few samples", "only in baseline", "only in candidate"]
Basis = Literal["runs", "repeats", "blocks"]


class CompareError(ControllerUsageError, ValueError):
    """A side that does not parse, or names nothing."""


@dataclass(frozen=True)
class SideSpec:
    """One side of a comparison: which store, which results."""

    label: str
    store_url: str
    selection: Selection


def _merge(base: Selection, **extra: object) -> Selection:
    from dataclasses import replace

    return replace(base, **extra)  # type: ignore[arg-type]


def parse_side(text: str, default_store: str, common: Selection | None = None) -> SideSpec:
    """A side: comma-separated ``sweep:ID``, ``tag:T``, ``since:T``, ``until:T``, ``A..B`` (a time
    range), ``store:URL`` or a store file's path; a bare word is a sweep id.

    ``common`` holds the filters both sides share (devices, workloads, backends).
    """
    store = default_store
    selection = common or Selection()
    tags = list(selection.tags)
    if not text.strip():
        raise CompareError("an empty side: name a sweep, a tag, a time range or a store")
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        kind, sep, value = part.partition(":")
        try:
            if sep and kind == "store":
                store = value if "://" in value else f"sqlite:///{Path(value).resolve()}"
            elif sep and kind == "sweep":
                selection = _merge(selection, sweep=value)
            elif sep and kind == "tag":
                tags.append(value)
            elif sep and kind in ("since", "until"):
                selection = _merge(selection, **{kind: parse_time(value)})
            elif ".." in part:
                lo, _, hi = part.partition("..")
                selection = _merge(selection, since=parse_time(lo) if lo else None,
                                   until=parse_time(hi) if hi else None)
            elif Path(part).suffix in (".db", ".sqlite", ".sqlite3") or Path(part).is_file():
                if not Path(part).is_file():
                    raise CompareError(f"no store file {part!r}")
                store = f"sqlite:///{Path(part).resolve()}"
            elif sep and "://" in part:
                store = part
            else:
                selection = _merge(selection, sweep=part)
        except SelectionError as exc:
            raise CompareError(str(exc)) from None
    return SideSpec(text, store, _merge(selection, tags=tuple(tags)))


@dataclass(frozen=True)
class SideCell:
    rows: tuple[FactRow, ...]

    @property
    def n_runs(self) -> int:
        return len(self.rows)

    @property
    def figure(self) -> float | None:
        """The median of the runs' figures (one run: its figure)."""
        rates = [r.img_per_s for r in self.rows if r.img_per_s]
        return statistics.median(rates) if rates else None

    @property
    def suspect(self) -> int:
        return sum(1 for r in self.rows if r.verdict == "suspect")

    def samples(self, basis: Basis) -> list[float]:
        if basis == "runs":
            return [r.img_per_s for r in self.rows if r.img_per_s]
        key = "repeats" if basis == "repeats" else "blocks"
        return [float(v) for r in self.rows for v in (r.stats.get(key) or []) if isinstance(v, (int, float))]

    def best_basis(self) -> Basis | None:
        for basis in ("runs", "repeats", "blocks"):
            if len(self.samples(basis)) >= (MIN_RUNS if basis == "runs" else 2):  # type: ignore[arg-type]
                return basis  # type: ignore[return-value]
        return None


def choose_basis(a: SideCell, b: SideCell) -> tuple[Basis, Basis]:
    """The same kind of sample on both sides where possible (runs, else repeats, else blocks)."""
    for basis in ("runs", "repeats", "blocks"):
        need = MIN_RUNS if basis == "runs" else 2
        if len(a.samples(basis)) >= need and len(b.samples(basis)) >= need:  # type: ignore[arg-type]
            return basis, basis  # type: ignore[return-value]
    return a.best_basis() or "runs", b.best_basis() or "runs"


def min_p(n: int, m: int) -> float:
    """The smallest two-sided p a rank test can give with n and m samples (no ties)."""
    return 2 / math.comb(n + m, n) if n and m else 1.0


@dataclass(frozen=True)
class CellComparison:
    key: CellKey
    baseline: SideCell | None
    candidate: SideCell | None
    estimate: RatioEstimate | None
    basis: str  # "6 repeats vs 6 repeats"
    verdict: Verdict

    @property
    def change_pct(self) -> float | None:
        return None if self.estimate is None else 100.0 * (self.estimate.ratio - 1.0)


@dataclass
class Comparison:
    baseline: SideSpec
    candidate: SideSpec
    group_by: GroupBy
    alpha: float
    cells: list[CellComparison] = field(default_factory=list)
    excluded_suspect: int = 0
    paired: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.cells:
            out[c.verdict] += 1
        return dict(out)

    def regressions(self, threshold_pct: float) -> list[CellComparison]:
        """Cells significantly slower by more than threshold_pct %."""
        return [c for c in self.cells if c.verdict == "slower" and c.change_pct is not None
                and -c.change_pct > threshold_pct]


def _in_time_order(cell: SideCell) -> list[float]:
    rows = sorted(cell.rows, key=lambda r: (r.finished_at is None, r.finished_at or datetime.min, r.job_id))
    return [r.img_per_s for r in rows if r.img_per_s]


def compare_cell(key: CellKey, base: SideCell | None, cand: SideCell | None, alpha: float,
                 paired: bool = False) -> CellComparison:
    if base is None or cand is None:
        return CellComparison(key, base, cand, None, "", "only in baseline" if cand is None else "only in candidate")
    xa, xb = _in_time_order(base), _in_time_order(cand)
    if paired and len(xa) == len(xb) >= 2:
        basis = f"{len(xa)} pairs of runs"
        est = paired_ratio_estimate(xa, xb, alpha)
        smallest = 2 / 2 ** len(xa)  # the signed-rank test's smallest two-sided p
    else:
        basis_a, basis_b = choose_basis(base, cand)
        xa, xb = base.samples(basis_a), cand.samples(basis_b)
        basis = f"{len(xa)} {basis_a} vs {len(xb)} {basis_b}" + (" (unpaired: run counts differ)" if paired else "")
        est = ratio_estimate(xa, xb, alpha)
        smallest = min_p(len(xa), len(xb))
    if est is None:
        return CellComparison(key, base, cand, None, basis, "too few samples")
    if est.p is None or smallest >= alpha:
        return CellComparison(key, base, cand, est, basis, "too few samples")
    verdict: Verdict = "no change"
    if est.p < alpha and est.low is not None and est.high is not None:
        if est.low > 1.0:
            verdict = "faster"
        elif est.high < 1.0:
            verdict = "slower"
    return CellComparison(key, base, cand, est, basis, verdict)


def _cells(rows: list[FactRow], by: GroupBy) -> dict[CellKey, SideCell]:
    return {k: SideCell(tuple(r for r in v if r.img_per_s)) for k, v in group_rows(rows, by).items()
            if any(r.img_per_s for r in v)}


def compare_rows(baseline: list[FactRow], candidate: list[FactRow], *, group_by: GroupBy = GroupBy.hardware,
                 alpha: float = ALPHA, paired: bool = False) -> list[CellComparison]:
    with gc_paused():
        a, b = _cells(baseline, group_by), _cells(candidate, group_by)
        return [compare_cell(k, a.get(k), b.get(k), alpha, paired) for k in sorted(set(a) | set(b))]


def load_side(side: SideSpec) -> list[FactRow]:
    store = ResultStore(side.store_url)
    try:
        return select_facts(store, side.selection)
    finally:
        store.close()


def compare(baseline: SideSpec, candidate: SideSpec, *, group_by: GroupBy = GroupBy.hardware,
            alpha: float = ALPHA, exclude_suspect: bool = False, paired: bool = False) -> Comparison:
    rows_a, rows_b = load_side(baseline), load_side(candidate)
    if not rows_a:
        raise CompareError(f"the baseline {baseline.label!r} selects no OK result ({baseline.selection.describe()})")
    if not rows_b:
        raise CompareError(f"the candidate {candidate.label!r} selects no OK result "
                           f"({candidate.selection.describe()})")
    excluded = 0
    if exclude_suspect:
        before = len(rows_a) + len(rows_b)
        rows_a = [r for r in rows_a if r.verdict != "suspect"]
        rows_b = [r for r in rows_b if r.verdict != "suspect"]
        excluded = before - len(rows_a) - len(rows_b)
    out = Comparison(baseline, candidate, group_by, alpha, excluded_suspect=excluded, paired=paired)
    out.cells = compare_rows(rows_a, rows_b, group_by=group_by, alpha=alpha, paired=paired)
    return out
