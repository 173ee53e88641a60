"""Flat export of stored results for pandas users: one row per stored result (every attempt).

Columns are flat and carry their units; library versions become ``lib_<name>``
columns (the union over the exported rows). Derived figures (energy per image,
the 95 % interval, GPU metrics of CPU-only results left empty, the validity
verdict) come from the same code as the report (:func:`controller.cells.make_cell`),
so an export and a report agree. The rows become one format-neutral table
(controller/render/table.py) that the CSV and Parquet writers render.
Parquet needs pyarrow (an optional extra).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgebench.controller.cells import job_variant, make_cell, workload_label
from edgebench.controller.errors import ControllerError
from edgebench.controller.render.table import Column, Table, Value
from edgebench.controller.store import ResultRow
from edgebench.schemas import AgentStatus, Result


class ExportError(ControllerError, RuntimeError):
    pass


def _utc(t: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back naive."""
    if t is None:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _stat(stat: Any, name: str) -> float | None:
    return getattr(stat, name) if stat is not None else None


def flatten(row: ResultRow, status: AgentStatus | None = None, job_tags: Iterable[str] = ()) -> dict[str, Any]:
    try:
        res: Result | None = row.result()
    except (ValidationError, ValueError):
        res = None  # a row that does not parse exports its identity only
    cell = make_cell(row, res, variant=job_variant(row))
    out: dict[str, Any] = {
        "job_id": row.job_id, "device_id": row.device_id, "attempt": row.attempt, "sweep_id": row.sweep_id,
        "finished_at": _utc(row.finished_at),
        "started_at": _utc(res.started_at) if res else None,
        "state": row.state, "outcome": row.outcome, "error_type": row.error_type, "reason": row.reason,
        "backend": row.backend, "mode": row.mode, "model": row.model, "dataset": row.dataset,
        "workload": workload_label(row.model, row.dataset or "?") if row.model else None,
        "batch_size": row.batch_size, "precision": row.precision, "gpus": row.gpus,
        "device_tags": ",".join(status.tags) if status else "", "job_tags": ",".join(sorted(job_tags)),
    }
    summary = res.summary if res else None
    spread = res.repeat_spread if res else None
    tel = res.telemetry if res else None
    gpu = tel.gpus[0] if tel and tel.gpus else None
    fp = res.fingerprint if res else None
    first_gpu = fp.gpus[0] if fp and fp.gpus else None
    gpu_na = cell.cpu_only  # GPU metrics of CPU-only results stay empty ("n/a"), never 0
    out.update({
        "per_device_batch_size": res.per_device_batch_size if res else None,
        "global_batch_size": res.global_batch_size if res else None,
        "data_format": res.data_format.value if res and res.data_format else None,
        "compile": res.compile if res else None,
        "input": res.job.input.value if res and res.job.input else None,
        "memory_policy": res.memory_policy.value if res else None,
        "data_source": res.data_source if res else None,
        "epochs": res.workload.epochs if res else None,
        "warmup_epochs": res.job.warmup_epochs if res else None,
        "img_per_s_window": summary.window_img_per_s if summary else None,
        "img_per_s_median": summary.median_img_per_s if summary else None,
        "img_per_s_mean": summary.mean_img_per_s if summary else None,
        "img_per_s_std": summary.std_img_per_s if summary else None,
        "n_batches": summary.n_batches if summary else None,
        "n_samples": summary.n_samples if summary else None,
        "images": summary.images if summary else None,
        "window_s": summary.window_s if summary else None,
        "repeats": spread.n if spread else None,
        "repeat_img_per_s_min": spread.min_img_per_s if spread else None,
        "repeat_img_per_s_max": spread.max_img_per_s if spread else None,
        "repeat_img_per_s_std": spread.std_img_per_s if spread and spread.n > 1 else None,
        "img_per_s_ci95": cell.ci95,
        "ci_basis": cell.ci_basis if cell.ci95 is not None else None,
        "block_img_per_s": ",".join(f"{b:.6g}" for b in cell.block_rates) or None,
        "telemetry_source": tel.source if tel else None,
        "telemetry_samples": tel.samples if tel else None,
        "gpu_util_pct_mean": None if gpu_na else _stat(gpu.util_pct if gpu else None, "mean"),
        "gpu_util_pct_p95": None if gpu_na else _stat(gpu.util_pct if gpu else None, "p95"),
        "sm_clock_mhz_mean": None if gpu_na else _stat(gpu.sm_clock_mhz if gpu else None, "mean"),
        "power_w_mean": None if gpu_na else cell.power_w,
        "power_w_max": None if gpu_na else _stat(gpu.power_w if gpu else None, "max"),
        "energy_j": None if gpu_na else cell.energy_j,
        "energy_j_per_img": None if gpu_na else cell.energy_j_per_img,
        "energy_source": None if gpu_na or gpu is None else gpu.energy_source,
        "gpu_mem_peak_bytes": None if gpu_na else cell.peak_mem_bytes,
        "gpu_memory_policy_detail": cell.mem_policy,
        "cpu_pct_mean": cell.cpu_pct,
        "rss_peak_bytes": cell.rss_peak_bytes,
        "flags": ",".join(cell.flags),
        "verdict": cell.verdict,
        "validity_reasons": "; ".join(cell.validity_reasons) or None,
        "validity_notes": "; ".join(cell.validity_notes) or None,
        "host": fp.host if fp else None,
        "os": fp.os if fp else None,
        "kernel": fp.kernel if fp else None,
        "python": fp.python if fp else None,
        "cpu_model": fp.cpu_model if fp else None,
        "cpu_cores_logical": fp.cpu_cores_logical if fp else None,
        "cpu_cores_physical": fp.cpu_cores_physical if fp else None,
        "ram_bytes": fp.ram_bytes if fp else None,
        "gpu_count": len(fp.gpus) if fp else None,
        "gpu_name": first_gpu.name if first_gpu else None,
        "gpu_driver": first_gpu.driver if first_gpu else None,
        "gpu_cuda": first_gpu.cuda if first_gpu else None,
        "gpu_mem_total_bytes": first_gpu.mem_total_bytes if first_gpu else None,
        "agent_version": fp.agent_version if fp else None,
        "container_image": fp.container_image if fp else None,
        "container_digest": fp.container_digest if fp else None,
    })
    for name, version in sorted((fp.libraries if fp else {}).items()):
        out[f"lib_{name}"] = version
    return out


def flat_rows(rows: list[ResultRow], statuses: dict[str, AgentStatus],
              tags: dict[tuple[str, str], set[str]] | None = None) -> list[dict[str, Any]]:
    """Flattened rows with the same columns each (library columns are the union, sorted last)."""
    tags = tags or {}
    flat = [flatten(r, statuses.get(r.device_id), tags.get((r.job_id, r.device_id), ())) for r in rows]
    libs = sorted({k for row in flat for k in row if k.startswith("lib_")})
    base = [k for k in (flat[0] if flat else {}) if not k.startswith("lib_")]
    return [{**{k: row.get(k) for k in base}, **{k: row.get(k) for k in libs}} for row in flat]


def export_table(rows: list[dict[str, Any]]) -> Table:
    """Flat rows as a table: one column per key (units in the names), raw values."""
    keys = list(rows[0]) if rows else []
    return Table("export", "results", tuple(Column(k, k) for k in keys),
                 tuple(tuple(Value(raw=row.get(k)) for k in keys) for row in rows))


def _table(rows: list[dict[str, Any]] | Table) -> Table:
    return rows if isinstance(rows, Table) else export_table(rows)


def write_csv(rows: list[dict[str, Any]] | Table, path: Path) -> None:
    table = _table(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        if not table.rows:
            return
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow(["" if v.raw is None else v.raw.isoformat() if isinstance(v.raw, datetime) else v.raw
                             for v in row])


def write_parquet(rows: list[dict[str, Any]] | Table, path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExportError(f"Parquet export needs pyarrow: pip install 'edgebench[parquet]' ({exc})") from None
    table = _table(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{c.key: v.raw for c, v in zip(table.columns, row)} for row in table.rows]
    pq.write_table(pa.Table.from_pylist(records) if records else pa.table({}), path)
