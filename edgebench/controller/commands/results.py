"""``controller results``: list, show, export."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from edgebench.common import jsonout
from edgebench.common.console import Column
from edgebench.controller.commands._options import (
    BackendFilterOpt,
    DeviceFilterOpt,
    JsonOpt,
    ModelFilterOpt,
    SweepIdOpt,
    out,
    output,
    read_store,
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
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.store import ResultRow

app = typer.Typer(help="Stored results.", no_args_is_help=False, invoke_without_command=True,
                  epilog="Example: controller results --sweep demo-1a2b --json")

COLUMNS = (
    Column("finished_at", "finished", fmt=lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else ""),
    Column("job_id", "job"), Column("device_id", "device"), Column("backend"), Column("workload"),
    Column("batch_size", "batch"), Column("precision", "prec."),
    Column("outcome", style=lambda v: None if v == "OK" else "red"),
    Column("img_per_s", "img/s", fmt=lambda v: f"{v:,.1f}" if v else ""), Column("sweep_id", "sweep"),
)


def row_record(r: ResultRow) -> dict[str, Any]:
    """A stored result as --json prints it: the row's columns (no result document; `results show` has it)."""
    doc = asdict(r)
    doc.pop("result_json")
    doc["workload"] = f"{r.model}/{r.dataset}"
    return doc


@app.callback()
def results(
    ctx: typer.Context,
    sweep: SweepIdOpt = None,
    device: DeviceFilterOpt = None,
    backend: BackendFilterOpt = None,
    model: ModelFilterOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List stored results (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = read_store(ctx).results(sweep_id=sweep, device_id=device, backend=backend, model=model, limit=limit)
    records = [row_record(r) for r in rows]
    if as_json:
        output(True).json(records)
        return
    out.table(COLUMNS, records, title=f"{len(rows)} result(s)")


@app.command(epilog="Example: controller results show job-1a2b3c4d5e6f | jq .results[0].outcome")
def show(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
         device: DeviceFilterOpt = None) -> None:
    """Print one job's result (or failure) and its events as JSON."""
    store = read_store(ctx)
    rows = store.results(job_id=job_id, device_id=device)
    events = [e.model_dump(mode="json") for e in store.events_for(job_id)]
    if not rows and not events:
        raise ControllerError(f"no job {job_id!r} in {store.url}")
    shown = []
    for r in rows:
        res = r.result()
        shown.append({
            "job_id": r.job_id, "device_id": r.device_id, "attempt": r.attempt, "state": r.state,
            "outcome": r.outcome, "error_type": r.error_type, "reason": r.reason,
            "result": res.model_dump(mode="json") if res else None,
        })
    print(jsonout.dumps({"results": shown, "events": events}))


@app.command("export", epilog="Example: controller results export --format parquet --out results.parquet")
def export(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet (the 'parquet' extra).")] = "csv",
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
    from edgebench.controller.export import flat_rows, write_csv, write_parquet
    from edgebench.controller.report import job_tags, select

    if fmt not in ("csv", "parquet"):
        raise ControllerUsageError(f"--format must be csv or parquet, not {fmt!r}")
    selection = make_selection(sweep, device, tag, workload, backend, model, since, until)
    store = read_store(ctx)
    rows, statuses = select(store, selection)
    flat = flat_rows(rows, statuses, job_tags(store, rows))
    (write_parquet if fmt == "parquet" else write_csv)(flat, out_path)
    out.print(f"wrote {len(flat)} result(s) to {out_path}")
