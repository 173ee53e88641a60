"""Machine-readable renderings of a Report: CSV (one row per cell) and JSON (everything)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import datetime
from typing import Any

from edgebench.controller.render import format as f
from edgebench.controller.report import Cell, Report


def render_csv(report: Report) -> str:
    """One row per cell; numbers unformatted at full precision, GPU metrics empty for CPU-only results."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in f.CSV_COLUMNS])
    for cell in report.cells:
        writer.writerow([f.csv_value(col, cell) for col in f.CSV_COLUMNS])
    return buf.getvalue()


def _plain(obj: Any) -> Any:
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
    doc["sd_img_per_s"] = cell.sd
    doc["sd_basis"] = cell.sd_basis
    if cell.cpu_only:  # "n/a", not 0: the GPU metrics do not apply
        for key in ("gpu_util_pct", "sm_clock_mhz", "power_w", "energy_j", "energy_j_per_img", "peak_mem_bytes"):
            doc[key] = None
    return doc


def render_json(report: Report) -> str:
    fleets = []
    for t in report.fleet_tables():
        fleets.append({
            "workload": t.workload, "mode": t.mode, "devices": t.devices, "backends": t.backends,
            "cells": [{"device_id": d, "backend": b, "job_id": c.job_id, "outcome": c.outcome,
                       "batch_size": c.batch_size, "precision": c.precision, "img_per_s": c.img_per_s,
                       "sd_img_per_s": c.sd} for (d, b), c in sorted(t.cells.items())],
            "fastest": {d: (w.backend if (w := t.winner(d)) else None) for d in t.devices},
            "notes": t.notes,
        })
    scaling = [{**{k: v for k, v in _plain(s).items() if k != "rows"},
                "rows": [{"gpus": r.gpus, "job_id": r.cell.job_id, "img_per_s": r.cell.img_per_s,
                          "speedup": r.speedup, "efficiency_pct": r.efficiency_pct} for r in s.rows]}
               for s in report.scaling_tables()]
    doc = {
        "kind": "edgebench-report",
        "format": 1,
        "generated_at": report.generated_at.isoformat(),
        "selection": _plain(report.selection),
        "store": report.store_url,
        "baseline": report.baseline,
        "utilisation_meaning": report.utilisation_meaning,
        "devices": _plain(report.devices),
        "cells": [cell_json(c) for c in report.cells],
        "fleet": fleets,
        "scaling": scaling,
        "notes": report.notes,
        "flag_meanings": f.FLAG_MEANINGS,
    }
    return json.dumps(doc, indent=2, allow_nan=False)
