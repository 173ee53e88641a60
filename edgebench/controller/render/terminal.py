"""Rich terminal rendering of a Report: machines, fleet view, per-device tables, scaling."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgebench.controller.render import format as f
from edgebench.controller.report import Report


def fmt_rate(value: float | None, std: float | None = None) -> str:
    """Kept for callers of the old module; see controller.render.format."""
    return f.fmt_rate(value, std)


# Below this console width (a pipe gets 80 columns) the wide tables keep their essentials.
WIDE = 160
NARROW_MACHINE = {"device", "CPU", "cores", "RAM", "GPU"}
NARROW_HEADERS = {"img_per_s_sd": "±", "ratio": "×", "gpu_util_pct": "util%", "power_w": "W", "cpu_pct": "CPU%",
                  "batch_size": "bs"}
NARROW_DETAIL = {"workload", "backend", "batch_size", "gpus", "img_per_s", "img_per_s_sd", "ratio", "flags"}


def _table(title: str, headers: list[str], numeric: list[bool] | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold cyan")
    for i, h in enumerate(headers):
        right = numeric[i] if numeric else False
        # names (backends, devices) stay whole; long labels wrap
        table.add_column(h, justify="right" if right else "left", no_wrap=right or h in ("backend", "device"))
    return table


def render_terminal(report: Report, console: Console) -> None:
    if not report.cells:
        console.print("no results match")
        return
    console.print(Text("edgebench report", style="bold"), Text(f" · {report.selection.describe()}", style="dim"))
    console.print(f"[dim]generated {report.generated_at:%Y-%m-%d %H:%M} UTC · baseline {report.baseline or '-'} · "
                  f"{len(report.cells)} results on {len(report.devices)} device(s)[/dim]", highlight=False)

    narrow = console.width < WIDE
    keep = [i for i, h in enumerate(f.MACHINE_HEADERS) if not narrow or h in NARROW_MACHINE]
    machines = _table("Machines", [f.MACHINE_HEADERS[i] for i in keep])
    for machine in f.machine_rows(report):
        machines.add_row(*[machine[i] for i in keep])
    console.print(machines)

    for fleet in report.fleet_tables():
        if len(fleet.devices) < 2:
            continue
        table = _table(f"Fleet · {f.section_title(fleet.workload, fleet.mode)} · img/s at each cell's fastest "
                       "configuration", ["device", *fleet.backends, "fastest"],
                       [False, *([True] * len(fleet.backends)), False])
        for device in fleet.devices:
            win = fleet.winner(device)
            cells = []
            for b in fleet.backends:
                c = fleet.cells.get((device, b))
                text = f.fleet_text(c)
                cells.append(f"[bold green]{text}[/bold green]" if c is not None and c is win else text)
            table.add_row(device, *cells, win.backend if win else "")
        console.print(table)
        for note in fleet.notes:
            console.print(f"  [yellow]![/yellow] {note}", highlight=False)

    for section in report.device_sections():
        d = section.device
        console.rule(f"[bold]{d.device_id}[/bold] · {d.gpus if d.has_gpu else 'CPU only'} · {d.cpu}")
        pivot = _table(f"{d.device_id} · img/s (± sd) per backend", ["workload", "config", *section.backends],
                       [False, False, *([True] * len(section.backends))])
        for row in section.pivot:
            texts = []
            for b in section.backends:
                c = row.cells.get(b)
                text = f.pivot_text(c)
                texts.append(f"[red]{text}[/red]" if c is not None and not c.ok else text)
            pivot.add_row(f.section_title(row.workload, row.mode), f.pivot_label(row), *texts)
        console.print(pivot)
        columns = f.detail_columns(section.cells)
        if narrow:  # the essentials; GPU columns only where a GPU result exists (else they all read n/a)
            has_gpu = not all(c.cpu_only for c in section.cells)
            wanted = NARROW_DETAIL | ({"gpu_util_pct", "power_w", "energy_j_per_img"} if has_gpu else {"cpu_pct"})
            columns = [dataclasses.replace(c, header=NARROW_HEADERS.get(c.key, c.header)) for c in columns
                       if c.key in wanted]
        detail = _table(f"{d.device_id} · details (× baseline = × {report.baseline})",
                        [c.header for c in columns], [c.numeric for c in columns])
        for cell in section.cells:
            detail.add_row(*[f"[red]{t}[/red]" if col.key == "img_per_s" and not cell.ok else t
                             for col, t in ((col, col.text(cell)) for col in columns)])
        console.print(detail)

    for sc in report.scaling_tables():
        table = _table(f"Scaling · {sc.device_id} · {sc.workload} · {sc.backend} · bs {sc.batch_size} "
                       f"per GPU ({sc.precision}); efficiency = img/s(N) / (N × img/s(1))", f.scaling_header(),
                       [True, True, True, True])
        for srow in sc.rows:
            table.add_row(*f.scaling_cells(srow))
        console.print(table)

    used = sorted({flag for c in report.cells for flag in c.flags})
    for flag in used:
        console.print(f"[yellow]{flag}[/yellow]: {f.FLAG_MEANINGS.get(flag, '')}", highlight=False)
    if any(f.preallocates(c) and not c.cpu_only for c in report.cells):
        console.print(f.PREALLOC_MEANING, highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note[/yellow]: {note}", highlight=False)
    console.print(f"[dim]{report.utilisation_meaning} n/a: not applicable (CPU-only); –: not measured.[/dim]",
                  highlight=False)
