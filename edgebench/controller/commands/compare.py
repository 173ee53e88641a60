"""``controller compare BASELINE CANDIDATE``: two sets of results, cell by cell, with significance."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.console import markup
from edgebench.common.errors import MissingExtra
from edgebench.controller.commands._options import OutOpt, config, out
from edgebench.controller.commands.report import BackendsOpt, DevicesOpt, WorkloadsOpt
from edgebench.controller.compare import ALPHA, compare, parse_side
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.groups import GroupBy
from edgebench.controller.selection import Selection


class RegressionFound(ControllerError):
    """--fail-on-regression: a cell is significantly slower by more than the threshold (exit code 1)."""


class CompareFormat(str, Enum):
    terminal = "terminal"
    md = "md"
    json = "json"
    html = "html"


SIDE_HELP = ("sweep id, sweep:ID, tag:TAG, since:T, until:T, a time range 2026-11-01..2026-11-15, store:URL or a "
             "store file; combine with commas (store:a.db,sweep:nightly)")


def compare_cmd(
    ctx: typer.Context,
    baseline: Annotated[str, typer.Argument(help=f"The reference: {SIDE_HELP}.")],
    candidate: Annotated[str, typer.Argument(help="What is compared with it (same forms).")],
    device: DevicesOpt = None,
    workload: WorkloadsOpt = None,
    backend: BackendsOpt = None,
    group_by: Annotated[GroupBy, typer.Option(
        "--group-by", help="Match cells by hardware (GPU model, power mode), full (also driver and image) or "
                           "device.")] = GroupBy.hardware,
    fail_on_regression: Annotated[float | None, typer.Option(
        "--fail-on-regression", metavar="PCT",
        help="Exit 1 when any cell is significantly slower by more than PCT %.")] = None,
    exclude_suspect: Annotated[bool, typer.Option(
        "--exclude-suspect", help="Leave out results whose validity record is suspect.")] = False,
    paired: Annotated[bool, typer.Option(
        "--paired", help="Interleaved runs: pair each cell's i-th baseline and candidate runs in time order "
                         "(Wilcoxon signed-rank on their ratios).")] = False,
    alpha: Annotated[float, typer.Option(help="Significance level of the rank test.")] = ALPHA,
    fmt: Annotated[CompareFormat, typer.Option("--format", "-f", help="Output format.")] = CompareFormat.terminal,
    out_path: OutOpt = None,
) -> None:
    """Compare two sweeps, tags, time ranges or stores cell by cell: ratio with its 95 % interval, a
    Mann-Whitney (or, --paired, signed-rank) test, and a verdict (faster, slower, no change within noise).
    Exits 1 with --fail-on-regression when a cell is significantly slower by more than PCT %."""
    from edgebench.controller.render.comparisons import comparison_document, comparison_json

    if not 0 < alpha < 1:
        raise ControllerUsageError("--alpha must be between 0 and 1")
    common = Selection(devices=tuple(device or ()), workloads=tuple(workload or ()), backends=tuple(backend or ()))
    store_url = config(ctx).store_url
    comp = compare(parse_side(baseline, store_url, common), parse_side(candidate, store_url, common),
                   group_by=group_by, alpha=alpha, exclude_suspect=exclude_suspect, paired=paired)
    doc = comparison_document(comp, fail_on_regression)
    if fmt is CompareFormat.json:
        _emit(comparison_json(comp, fail_on_regression), out_path)
    elif fmt is CompareFormat.md:
        from edgebench.controller.render.markdown import render_document

        _emit(render_document(doc), out_path)
    elif fmt is CompareFormat.html:
        try:
            from edgebench.controller.render.html import render_document as html_document
        except ImportError as exc:  # matplotlib is the `report` extra
            raise MissingExtra("matplotlib", "report", "the HTML output") from exc
        _emit(html_document(doc, generator="controller compare --format html"), out_path)
    else:
        from rich.console import Console

        from edgebench.controller.render.terminal import render_document as terminal_document

        if out_path is None:
            terminal_document(doc, out.for_renderables())
        else:
            with out_path.open("w", encoding="utf-8") as fh:
                terminal_document(doc, Console(file=fh, width=200, color_system=None))
    if fail_on_regression is not None:
        bad = comp.regressions(fail_on_regression)
        if bad:
            raise RegressionFound("; ".join(f"regression: {c.key.group.label()} · {c.key.label()}: "
                                            f"{c.change_pct:+.1f} % ({c.basis})" for c in bad))


def _emit(text: str, out_path: Path | None) -> None:
    if out_path is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    out.print(f"wrote {markup(str(out_path))}")
