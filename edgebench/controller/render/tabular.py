"""Machine-readable renderings: CSV of any table (raw values), and the report's JSON (everything)."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from datetime import datetime
from typing import Any

from edgebench.common import jsonout
from edgebench.controller.render import format as f
from edgebench.controller.render.table import Table
from edgebench.controller.report import Cell, Report


def table_csv(table: Table) -> str:
    """One line per row, column keys as the header, raw values at full precision ("" for none)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv(v.raw) for v in row])
    return buf.getvalue()


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def render_csv(report: Report) -> str:
    """One row per cell; numbers unformatted at full precision, GPU metrics empty for CPU-only results."""
    from edgebench.controller.render.tables import cells_table

    return table_csv(cells_table(report))


def _plain(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # a device may send inf; JSON has no such number
    if isinstance(obj, datetime):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def cell_json(cell: Cell) -> dict[str, Any]:
    doc = _plain(cell)
    doc["ci_basis"] = cell.ci_basis
    doc["sd_basis"] = cell.sd_basis
    doc["img_per_j"] = cell.img_per_j
    if cell.cpu_only:  # "n/a", not 0: the GPU metrics do not apply
        for key in ("gpu_util_pct", "sm_clock_mhz", "power_w", "energy_j", "energy_j_per_img", "peak_mem_bytes",
                    "img_per_j"):
            doc[key] = None
    return doc


def render_json(report: Report) -> str:
    fleets = []
    for t in report.fleet_tables():
        fleets.append({
            "workload": t.workload, "mode": t.mode, "devices": t.devices, "backends": t.backends,
            "cells": [{"device_id": d, "backend": b, "job_id": c.job_id, "outcome": c.outcome,
                       "batch_size": c.batch_size, "precision": c.precision, "img_per_s": c.img_per_s,
                       "ci95_img_per_s": c.ci95, "verdict": c.verdict} for (d, b), c in sorted(t.cells.items())],
            # None where the fastest is not separable from the runner-up (intervals overlap)
            "fastest": {d: (w.backend if (w := t.winner(d)) else None) for d in t.devices},
            "ranking": {d: t.ranking(d).text() for d in t.devices},
            "chart_config": None if t.chart_config is None else
            dict(zip(("batch_size", "precision", "gpus"), t.chart_config)),
            "notes": t.notes,
        })
    scaling = [{**{k: v for k, v in _plain(s).items() if k != "rows"},
                "rows": [{"gpus": r.gpus, "job_id": r.cell.job_id, "img_per_s": r.cell.img_per_s,
                          "speedup": r.speedup, "efficiency_pct": r.efficiency_pct} for r in s.rows]}
               for s in report.scaling_tables()]
    roll = report.rollup()
    doc: dict[str, Any] = {
        "kind": "edgebench-report",
        "format": 2,
        "generated_at": report.generated_at.isoformat(),
        "selection": _plain(report.selection),
        "store": report.store_url,
        "baseline": report.baseline,
        "utilisation_meaning": report.utilisation_meaning,
        "devices": _plain(report.devices),
        "cells": [cell_json(c) for c in report.cells],
        "fleet": fleets,
        "rollup": None if roll is None else {
            "baseline": roll.baseline,
            "values": [{"device_id": d, "backend": b, "geomean_ratio": g, "configs": n}
                       for (d, b), (g, n) in sorted(roll.values.items())]},
        "scaling": scaling,
        "notes": report.notes,
        "flag_meanings": f.FLAG_MEANINGS,
    }
    return jsonout.dumps(_plain(doc), allow_nan=False)
