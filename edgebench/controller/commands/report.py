"""``controller report``: comparison tables and charts from stored results."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from edgebench.common.errors import MissingExtra
from edgebench.controller.commands._options import BACKENDS, WORKLOAD_NAMES, OutOpt, SweepIdOpt, out, read_store
from edgebench.controller.groups import GroupBy
from edgebench.controller.report import Report, Selection, build_report, parse_time, select

# Selection options shared with `controller results export`.
DevicesOpt = Annotated[list[str] | None, typer.Option("--device", "-d", help="Only this device (repeatable).")]
TagsOpt = Annotated[list[str] | None, typer.Option(
    "--tag", help="Only devices with this tag, or jobs dispatched with it (repeatable).")]
WorkloadsOpt = Annotated[list[str] | None, typer.Option(
    "--workload", "-w", help=f"Only this catalogue workload ({WORKLOAD_NAMES}) or model/dataset (repeatable).")]
BackendsOpt = Annotated[list[str] | None, typer.Option(
    "--backend", "-b", help=f"Only this backend (repeatable): {BACKENDS}.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Only this model (mlp, cnn, ...).")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Finished at or after: 2026-11-28, 2026-11-28T15:00 (UTC) or an age: 12h, 7d.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Finished at or before (same forms as --since).")]


class ReportFormat(str, Enum):
    terminal = "terminal"
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


def make_selection(sweep: str | None, device: list[str] | None, tag: list[str] | None, workload: list[str] | None,
                   backend: list[str] | None, model: str | None, since: str | None, until: str | None) -> Selection:
    return Selection(sweep=sweep, devices=tuple(device or ()), tags=tuple(tag or ()),
                     workloads=tuple(workload or ()), backends=tuple(backend or ()), model=model,
                     since=parse_time(since) if since else None,
                     until=parse_time(until) if until else None)


def safe_url(url: str) -> str:
    """The store URL without its password, for headers and footers."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: show nothing rather than a secret
        return ""


def report(
    ctx: typer.Context,
    sweep: SweepIdOpt = None,
    device: DevicesOpt = None,
    tag: TagsOpt = None,
    workload: WorkloadsOpt = None,
    backend: BackendsOpt = None,
    model: ModelOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    baseline: Annotated[str | None, typer.Option(
        help="Backend the speed ratio is taken against (default: keras-tensorflow, else torch, ... if present).")
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format.")] = ReportFormat.terminal,
    out_path: OutOpt = None,
    job: Annotated[str | None, typer.Option(
        "--job", help="HTML: the job whose time series is drawn (default: the first GPU job).")] = None,
    title: Annotated[str, typer.Option(help="HTML: the page title.")] = "edgebench report",
    history: Annotated[bool, typer.Option(
        "--history", help="Each cell of each device group over time, with regressions (level shifts).")] = False,
    group_by: Annotated[GroupBy, typer.Option(
        "--group-by", help="--history: series by hardware (GPU model, power mode), full (also driver and "
                           "image) or device.")] = GroupBy.hardware,
    exclude_suspect: Annotated[bool, typer.Option(
        "--exclude-suspect", help="--history: leave out runs whose validity record is suspect.")] = False,
) -> None:
    """Per device: img/s per backend and batch size, ratio to a baseline, GPU utilisation beside SM clock,
    power and energy, peak memory; a fleet view (devices x backends) and scaling tables."""
    selection = make_selection(sweep, device, tag, workload, backend, model, since, until)
    store = read_store(ctx)
    if history:  # controller/history.py
        from edgebench.controller.render.history_output import render_history

        text = render_history(store, selection, fmt.value, group_by, exclude_suspect, out_path,
                              out.for_renderables())
        if text is not None:
            _write(text, out_path, fmt)
        return
    rows, statuses = select(store, selection)
    rep = build_report(rows, baseline, statuses=statuses, selection=selection, store_url=safe_url(store.url))
    text = render(rep, fmt, job, title, out_path)
    if text is None:
        return
    if out_path is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_path} ({fmt.value}, {len(rep.cells)} results on {len(rep.devices)} device(s))")


def render(rep: Report, fmt: ReportFormat, job: str | None, title: str, out_path: Path | None) -> str | None:
    """The report as text in ``fmt``; the terminal format prints itself (to ``out`` if given) and returns None."""
    if fmt is ReportFormat.terminal:
        from edgebench.controller.render.terminal import render_terminal

        if out_path is None:
            render_terminal(rep, out.for_renderables())
            return None
        from rich.console import Console

        with out_path.open("w", encoding="utf-8") as fh:
            render_terminal(rep, Console(file=fh, width=200, color_system=None))
        out.print(f"wrote {out_path}")
        return None
    if fmt is ReportFormat.md:
        from edgebench.controller.render.markdown import render_markdown

        return render_markdown(rep)
    if fmt is ReportFormat.csv:
        from edgebench.controller.render.tabular import render_csv

        return render_csv(rep)
    if fmt is ReportFormat.json:
        from edgebench.controller.render.tabular import render_json

        return render_json(rep)
    try:
        from edgebench.controller.render.html import render_html
    except ImportError as exc:  # matplotlib is the `report` extra
        raise MissingExtra("matplotlib", "report", "the HTML report") from exc
    return render_html(rep, job_id=job, title=title)


def _write(text: str, out_path: Path | None, fmt: ReportFormat) -> None:
    if out_path is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_path} ({fmt.value})")
