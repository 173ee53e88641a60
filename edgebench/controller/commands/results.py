"""``controller results``: list, show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgebench.controller.commands._options import (
    BackendFilterOpt,
    DeviceFilterOpt,
    ModelFilterOpt,
    SweepIdOpt,
    config,
    console,
    fail,
)
from edgebench.controller.commands.report import (
    BackendsOpt,
    DevicesOpt,
    ModelOpt,
    SinceOpt,
    TagsOpt,
    UntilOpt,
    WorkloadsOpt,
    make_selection,
)
from edgebench.controller.store import ResultStore

app = typer.Typer(help="Stored results.", no_args_is_help=False, invoke_without_command=True)


@app.callback()
def results(
    ctx: typer.Context,
    sweep: SweepIdOpt = None,
    device: DeviceFilterOpt = None,
    backend: BackendFilterOpt = None,
    model: ModelFilterOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """List stored results (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    store = ResultStore(config(ctx).store_url)
    rows = store.results(sweep_id=sweep, device_id=device, backend=backend, model=model, limit=limit)
    table = Table(title=f"{len(rows)} result(s)")
    for col in ("finished", "job", "device", "backend", "workload", "batch", "prec.", "outcome", "img/s", "sweep"):
        table.add_column(col)
    for r in rows:
        rate = f"{r.img_per_s:,.1f}" if r.img_per_s else ""
        table.add_row(r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "", r.job_id, r.device_id,
                      r.backend or "", f"{r.model}/{r.dataset}", str(r.batch_size or ""), r.precision or "",
                      r.outcome, rate, r.sweep_id or "")
    console.print(table)


@app.command()
def show(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
         device: DeviceFilterOpt = None) -> None:
    """Print one job's result (or failure) and its events as JSON."""
    store = ResultStore(config(ctx).store_url)
    rows = store.results(job_id=job_id, device_id=device)
    events = [e.model_dump(mode="json") for e in store.events_for(job_id)]
    if not rows and not events:
        raise fail(f"no job {job_id!r} in {store.url}")
    out = []
    for r in rows:
        res = r.result()
        out.append({
            "job_id": r.job_id, "device_id": r.device_id, "attempt": r.attempt, "state": r.state,
            "outcome": r.outcome, "error_type": r.error_type, "reason": r.reason,
            "result": res.model_dump(mode="json") if res else None,
        })
    print(json.dumps({"results": out, "events": events}, indent=2))


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    sweep: SweepIdOpt = None,
    device: DevicesOpt = None,
    tag: TagsOpt = None,
    workload: WorkloadsOpt = None,
    backend: BackendsOpt = None,
    model: ModelOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """One flat row per stored result (every attempt) for pandas: throughput, telemetry, fingerprint, versions."""
    from edgebench.controller.export import ExportError, flat_rows, write_csv, write_parquet
    from edgebench.controller.report import SelectionError, job_tags, select

    if fmt not in ("csv", "parquet"):
        raise fail(f"--format must be csv or parquet, not {fmt!r}")
    selection = make_selection(sweep, device, tag, workload, backend, model, since, until)
    store = ResultStore(config(ctx).store_url)
    try:
        rows, statuses = select(store, selection)
    except SelectionError as exc:
        raise fail(str(exc)) from None
    flat = flat_rows(rows, statuses, job_tags(store, rows))
    try:
        (write_parquet if fmt == "parquet" else write_csv)(flat, out)
    except ExportError as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {len(flat)} result(s) to {out}", highlight=False)
