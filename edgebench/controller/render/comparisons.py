"""Comparisons (controller/compare.py) and histories (controller/history.py) as documents and JSON."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from edgebench.common import jsonout
from edgebench.controller.compare import CellComparison, Comparison
from edgebench.controller.groups import CellKey, DeviceGroup
from edgebench.controller.history import History, Series, Shift
from edgebench.controller.render import format as f
from edgebench.controller.render.table import Chart, Column, Document, Section, Style, Table, Value, text

MAX_HISTORY_CHARTS = 24
VERDICT_STYLE: dict[str, Style] = {"slower": "bad", "faster": "win", "too few samples": "muted",
                                   "only in baseline": "muted", "only in candidate": "muted"}


def _slug(value: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in value.lower()).strip("-")[:80]


def _ratio_text(c: CellComparison) -> Value:
    est = c.estimate
    if est is None:
        return Value()
    bounds = (f"[{est.low:.3f}–{est.high:.3f}]" if est.low is not None and est.high is not None
              else "[no interval]")
    return Value(f"{est.ratio:.3f}×", raw=est.ratio, extra=bounds)


def _side(cell: Any) -> Value:
    if cell is None:
        return Value()
    extra = f"({cell.n_runs} run{'s' if cell.n_runs != 1 else ''})"
    if cell.suspect:
        extra += f" ⚠ {cell.suspect} suspect"
    return Value(f.fmt_rate(cell.figure), raw=cell.figure, extra=extra, style="warn" if cell.suspect else "")


def _p(c: CellComparison) -> Value:
    p = c.estimate.p if c.estimate is not None else None
    if p is None:
        return Value()
    return Value(f"{p:.3g}" if p >= 0.001 else "<0.001", raw=p)


COMPARE_COLUMNS = (Column("workload", "workload"), Column("backend", "backend"), Column("config", "config"),
                   Column("baseline_img_per_s", "baseline img/s", True, "img/s"),
                   Column("candidate_img_per_s", "candidate img/s", True, "img/s"),
                   Column("ratio", "ratio [95 % CI]", True), Column("p", "p", True),
                   Column("basis", "samples"), Column("verdict", "verdict"))


COMPARE_COMPACT = ("workload", "backend", "config", "ratio", "verdict")


def _compare_row(c: CellComparison) -> tuple[Value, ...]:
    k = c.key
    return (text(f.section_title(k.workload, k.mode)), text(k.backend), text(k.config_label()), _side(c.baseline),
            _side(c.candidate), _ratio_text(c), _p(c), text(c.basis),
            text(c.verdict, style=VERDICT_STYLE.get(c.verdict, "")))


UNPAIRED_CALLOUT = (
    "ratio = candidate / baseline throughput: the median of all pairwise ratios of the two sides' samples "
    "(Hodges-Lehmann), with its distribution-free 95 % interval. A verdict is faster or slower only where the "
    "Mann-Whitney test gives p below the threshold and the interval excludes 1; otherwise no change within noise. "
    "Too few samples: the two sides' sizes cannot reach that p at all (3 runs against 3 never can). Samples are "
    "the cell's runs when both sides have 4 or more, else the repeats of every run, else the runner's batch blocks.")
PAIRED_CALLOUT = (
    "Paired: each cell's i-th baseline run is set against its i-th candidate run, in time order (runs made in "
    "turns share the machine's conditions). ratio = the Hodges-Lehmann estimate of the pairs' ratios (the median "
    "of their pairwise means, on a log scale) with its signed-rank 95 % interval; a verdict is faster or slower "
    "only where the Wilcoxon signed-rank test gives p below the threshold and the interval excludes 1. A cell "
    "whose sides have different run counts is compared unpaired, and says so.")


def comparison_document(comp: Comparison, fail_pct: float | None = None) -> Document:
    counts = comp.counts()
    order = ("slower", "faster", "no change", "too few samples", "only in baseline", "only in candidate")
    summary = ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v))
    facts = [("baseline", f"{comp.baseline.label} ({comp.baseline.selection.describe()})"),
             ("candidate", f"{comp.candidate.label} ({comp.candidate.selection.describe()})"),
             ("cells", f"{len(comp.cells)}: {summary or 'none'}"),
             ("grouped by", comp.group_by.value),
             ("significance", "two-sided " + ("Wilcoxon signed-rank over pairs of runs" if comp.paired
                                              else "Mann-Whitney") + f", p < {comp.alpha:g}")]
    if comp.baseline.store_url != comp.candidate.store_url:
        facts += [("baseline store", _safe(comp.baseline.store_url)),
                  ("candidate store", _safe(comp.candidate.store_url))]
    else:
        facts.append(("store", _safe(comp.baseline.store_url)))
    if comp.excluded_suspect:
        facts.append(("left out", f"{comp.excluded_suspect} suspect result(s)"))
    sections = []
    if fail_pct is not None:
        bad = comp.regressions(fail_pct)
        lead = (f"{len(bad)} cell(s) significantly slower by more than {fail_pct:g} %." if bad else
                f"No cell is significantly slower by more than {fail_pct:g} %.")
        blocks = (Table("regressions", f"Slower by more than {fail_pct:g} %", COMPARE_COLUMNS,
                        tuple(_compare_row(c) for c in bad)),) if bad else ()
        sections.append(Section("gate", "Regression gate", lead=lead, blocks=blocks))
    by_group: dict[DeviceGroup, list[CellComparison]] = defaultdict(list)
    for c in comp.cells:
        by_group[c.key.group].append(c)
    for group, cells in sorted(by_group.items()):
        chart_cells = [c for c in cells if c.estimate is not None]
        table = Table(f"group-{_slug(group.label())}", group.label(), COMPARE_COLUMNS,
                      tuple(_compare_row(c) for c in cells), compact=COMPARE_COMPACT,
                      chart=Chart("compare", chart_cells, "candidate / baseline per cell with its 95 % interval; "
                                                          "red: significantly slower, green: faster")
                      if chart_cells else None)
        sections.append(Section(f"group-{_slug(group.label())}", group.label(), blocks=(table,)))
    return Document(
        "edgebench compare", f"{comp.candidate.label} against {comp.baseline.label}", tuple(facts),
        callout=PAIRED_CALLOUT if comp.paired else UNPAIRED_CALLOUT,
        sections=tuple(sections), empty="Nothing to compare.",
        footer="docs/REPORTS.md explains the test and why it is a rank test, not a bootstrap.")


def _safe(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: show nothing rather than a secret
        return ""


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def comparison_json(comp: Comparison, fail_pct: float | None = None) -> str:
    def side(cell: Any) -> Any:
        if cell is None:
            return None
        return {"img_per_s": cell.figure, "runs": cell.n_runs, "suspect": cell.suspect,
                "job_ids": [r.job_id for r in cell.rows]}

    cells = []
    for c in comp.cells:
        est = c.estimate
        cells.append({
            "group": _group_json(c.key.group), **_key_json(c.key),
            "baseline": side(c.baseline), "candidate": side(c.candidate),
            "ratio": _finite(est.ratio) if est else None, "ratio_ci95": [est.low, est.high] if est else None,
            "p": est.p if est else None, "exact": est.exact if est else None, "basis": c.basis,
            "verdict": c.verdict,
        })
    doc = {
        "kind": "edgebench-compare", "format": 1,
        "baseline": {"label": comp.baseline.label, "selection": comp.baseline.selection.describe(),
                     "store": _safe(comp.baseline.store_url)},
        "candidate": {"label": comp.candidate.label, "selection": comp.candidate.selection.describe(),
                      "store": _safe(comp.candidate.store_url)},
        "group_by": comp.group_by.value, "alpha": comp.alpha,
        "test": ("two-sided Wilcoxon signed-rank over pairs of runs; Hodges-Lehmann ratio of the pairs" if comp.paired
                 else "two-sided Mann-Whitney U; Hodges-Lehmann ratio with Moses' distribution-free interval"),
        "paired": comp.paired, "counts": comp.counts(),
        "fail_on_regression_pct": fail_pct,
        "regressions": [c.key.label() for c in comp.regressions(fail_pct)] if fail_pct is not None else None,
        "excluded_suspect": comp.excluded_suspect, "cells": cells,
    }
    return jsonout.dumps(doc, allow_nan=False, default=str)


def _group_json(g: DeviceGroup) -> dict[str, str | None]:
    return {"hardware": g.hardware, "power_mode": g.power_mode or None, "driver": g.driver or None,
            "image_digest": g.image_digest or None, "device_id": g.device_id or None}


def _key_json(k: CellKey) -> dict[str, Any]:
    return {"workload": k.workload, "model": k.model, "dataset": k.dataset, "mode": k.mode, "backend": k.backend,
            "batch_size": k.batch_size, "precision": k.precision, "gpus": k.gpus}


# --- history -------------------------------------------------------------------------


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M}" if t else f.MISSING


def _shift_row(sh: Shift) -> tuple[Value, ...]:
    k = sh.key
    first = Value(sh.first.job_id, raw=sh.first.job_id, title=f"on {sh.first.device_id}, attempt {sh.first.attempt}",
                  extra="⚠ suspect" if sh.first.verdict == "suspect" else "",
                  style="warn" if sh.first.verdict == "suspect" else "")
    return (text(k.group.label()), text(k.label()), first,
            text(_when(sh.first.finished_at)),
            Value(f"{sh.ratio:.3f}×", raw=sh.ratio, style="bad" if sh.regression else "win"),
            Value(f"{sh.p:.2g}", raw=sh.p),
            text(f"{f.fmt_rate(sh.last_before.img_per_s)} -> {f.fmt_rate(sh.first.img_per_s)}"),
            text("; ".join(sh.changes) or f.MISSING))


SHIFT_COLUMNS = (Column("group", "device group"), Column("cell", "cell"), Column("first_run", "first run"),
                 Column("finished", "finished (UTC)"), Column("ratio", "new / old", True), Column("p", "p", True),
                 Column("img_per_s", "img/s (last before -> first)"), Column("changed", "what changed"))


def _series_row(s: Series) -> tuple[Value, ...]:
    import statistics

    rates = [r.img_per_s for r in s.runs]
    suspect = sum(1 for r in s.runs if r.verdict == "suspect")
    k = s.key
    shifts = ", ".join(f"{'↓' if sh.regression else '↑'} {sh.ratio:.2f}× at run {sh.index + 1}" for sh in s.shifts)
    return (text(f.section_title(k.workload, k.mode)), text(k.backend), text(k.config_label()),
            Value(str(len(s.runs)), raw=len(s.runs), extra=f"({suspect} suspect)" if suspect else ""),
            text(_when(s.runs[0].finished_at)), text(_when(s.latest.finished_at)),
            Value(f.fmt_rate(s.latest.img_per_s), raw=s.latest.img_per_s),
            Value(f.fmt_rate(statistics.median(rates)), raw=statistics.median(rates)),
            text(shifts or "-", style="bad" if any(sh.regression for sh in s.shifts) else ""))


SERIES_COLUMNS = (Column("workload", "workload"), Column("backend", "backend"), Column("config", "config"),
                  Column("runs", "runs", True), Column("first", "first (UTC)"), Column("latest", "latest (UTC)"),
                  Column("latest_img_per_s", "latest img/s", True, "img/s"),
                  Column("median_img_per_s", "median img/s", True, "img/s"), Column("shifts", "level shifts"))


def history_document(hist: History, selection: str, store_url: str,
                     max_charts: int = MAX_HISTORY_CHARTS) -> Document:
    from edgebench.controller.history import ALPHA, MIN_AFTER, MIN_BEFORE, MIN_EFFECT

    shifts = hist.shifts()
    regressions = [s for s in shifts if s.regression]
    facts = [("selection", selection), ("grouped by", hist.group_by.value),
             ("series", f"{len(hist.series)} in {len(hist.groups)} device group(s), "
                        f"{sum(len(s.runs) for s in hist.series)} runs"),
             ("regressions", str(len(regressions))), ("improvements", str(len(shifts) - len(regressions))),
             ("store", _safe(store_url))]
    if hist.excluded_suspect:
        facts.append(("left out", f"{hist.excluded_suspect} suspect run(s)"))
    sections = [Section("shifts", "Regressions and improvements",
                        lead=(f"Level shifts of a cell's throughput over its runs: at least {MIN_BEFORE} runs before "
                              f"and {MIN_AFTER} after, Mann-Whitney p < {ALPHA:g}, and at least {MIN_EFFECT:.0%} "
                              "apart. The first run at the new level, and what changed in its fingerprint since "
                              "the run before it."
                              if shifts else "No level shift found in any series."),
                        blocks=(Table("shifts", "Level shifts", SHIFT_COLUMNS,
                                      tuple(_shift_row(sh) for sh in sorted(shifts, key=lambda s: s.ratio)),
                                      compact=("cell", "first_run", "ratio", "changed")),)
                        if shifts else ())]
    charts = total = 0
    for group in hist.groups:
        series = [s for s in hist.series if s.key.group == group]
        table = Table(f"history-{_slug(group.label())}", group.label(), SERIES_COLUMNS,
                      tuple(_series_row(s) for s in series),
                      compact=("workload", "backend", "config", "runs", "latest_img_per_s", "shifts"))
        blocks: list[Table | Chart] = [table]
        by_workload: dict[tuple[str, str], list[Series]] = defaultdict(list)
        for s in series:
            if len(s.runs) >= 2:
                by_workload[(s.key.workload, s.key.mode)].append(s)
        total += len(by_workload)
        # the panels with level shifts first: they are what the page is read for
        for (workload, mode), members in sorted(by_workload.items(),
                                                key=lambda kv: (-sum(len(s.shifts) for s in kv[1]), kv[0])):
            if charts >= max_charts:
                break
            blocks.append(Chart("history", (group, workload, mode, members),
                                f"{f.section_title(workload, mode)} on {group.label()}: img/s of each run over "
                                "time; hollow markers: suspect runs; dashed lines: level shifts."))
            charts += 1
        sections.append(Section(f"group-{_slug(group.label())}", group.label(), blocks=tuple(blocks)))
    omitted = total - charts
    return Document("edgebench history", selection, tuple(facts),
                    callout="Each series is one cell: a device group x backend x workload x configuration, its OK "
                            "runs oldest first." + (f" {omitted} chart(s) left out (at most {max_charts}); the "
                                                    "tables list every series." if omitted else ""),
                    sections=tuple(sections), empty="No runs match the selection.")


def history_json(hist: History) -> str:
    def run(r: Any) -> dict[str, Any]:
        return {"job_id": r.job_id, "device_id": r.device_id, "attempt": r.attempt,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None, "img_per_s": r.img_per_s,
                "verdict": r.verdict, "driver": r.driver, "image_digest": r.image_digest}

    doc = {
        "kind": "edgebench-history", "format": 1, "group_by": hist.group_by.value,
        "excluded_suspect": hist.excluded_suspect,
        "series": [{"group": _group_json(s.key.group), **_key_json(s.key), "runs": [run(r) for r in s.runs],
                    "shifts": [{"index": sh.index, "first_run": run(sh.first), "last_before": run(sh.last_before),
                                "ratio": sh.ratio, "p": sh.p, "regression": sh.regression,
                                "changes": list(sh.changes)} for sh in s.shifts]} for s in hist.series],
    }
    return jsonout.dumps(doc, allow_nan=False)
