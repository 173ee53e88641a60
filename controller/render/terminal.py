"""Rich terminal rendering of a Report: one table per device and workload."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from controller.report import Report


def fmt_rate(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    if std:
        text += f" ± {std:,.0f}" if std >= 10 else f" ± {std:,.1f}"
    return text


def render_terminal(report: Report, console: Console) -> None:
    if not report.cells:
        console.print("no results match")
        return
    for (device, workload, mode), cells in report.groups().items():
        table = Table(title=f"{device} · {workload} · {mode}", title_justify="left")
        table.add_column("backend", no_wrap=True)
        table.add_column("batch", justify="right")
        table.add_column("prec.")
        table.add_column("img/s (window)", justify="right")
        table.add_column("per-batch median ± std", justify="right")
        table.add_column(f"× {report.baseline}", justify="right")
        table.add_column("GPU util %", justify="right")
        table.add_column("flags")
        for c in cells:
            if c.outcome != "OK":
                table.add_row(c.backend, str(c.batch_size), c.precision, f"[red]{c.outcome}[/red]",
                              "", "", "", "")
                continue
            table.add_row(
                c.backend, str(c.batch_size), c.precision,
                fmt_rate(c.img_per_s),
                fmt_rate(c.median_img_per_s, c.std_img_per_s),
                f"{c.ratio:.2f}" if c.ratio is not None else "-",
                f"{c.gpu_util_pct:.0f}" if c.gpu_util_pct is not None else "n/a",
                ", ".join(c.flags),
            )
        console.print(table)
