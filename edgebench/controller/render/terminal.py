"""Rich terminal rendering of a document.

Every string goes to rich as a ``Text`` object, never as a markup string:
rich would otherwise interpret "[...]" inside a device's reason or library
version as style markup (or a link).
"""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from edgebench.controller.render.table import Document, Notes, Section, Table, Value

STYLES = {"win": "bold green", "bad": "red", "warn": "yellow", "na": "dim", "muted": "dim", "strong": "bold"}

# Below this console width (a pipe gets 80 columns) tables keep their compact columns.
WIDE = 160


def _text(v: Value) -> Text:
    out = Text(v.text, style=STYLES.get(v.style, ""))
    if v.extra:
        out.append((" " if v.text else "") + v.extra, style="dim" if v.style != "bad" else "red")
    return out


def rich_table(table: Table, narrow: bool = False) -> RichTable:
    keep = [i for i, c in enumerate(table.columns) if not narrow or not table.compact or c.key in table.compact]
    out = RichTable(title=Text(table.title, style="bold") if table.title else None, title_justify="left",
                    header_style="bold cyan")
    for i in keep:
        col = table.columns[i]
        # names (backends, devices) stay whole; long labels wrap
        out.add_column(Text(col.header), justify="right" if col.numeric else "left",
                       no_wrap=col.numeric or col.key in ("backend", "device"))
    for row in table.rows:
        out.add_row(*[_text(row[i]) for i in keep])
    return out


def _section(section: Section, console: Console, narrow: bool) -> None:
    if section.blocks and all(not isinstance(b, (Table, Notes)) for b in section.blocks):
        return  # charts only
    heading = Text(section.title, style="bold")
    if section.meta:
        heading.append(f" · {section.meta}", style="")
    console.rule(heading)
    if section.lead:
        console.print(Text(section.lead, style="dim"))
    for block in section.blocks:
        if isinstance(block, Table):
            if block.lead and block.lead != section.lead:
                console.print(Text(block.lead, style="dim"))
            if block.title == section.title:
                block = replace(block, title="")  # the rule above already says it
            console.print(rich_table(block, narrow))
            for note in block.notes:
                console.print(Text.assemble(("  ! ", "yellow"), note))
        elif isinstance(block, Notes):
            for label, body in block.items:
                console.print(Text.assemble((f"{label}: " if label else "", "yellow"), body))


def render_document(doc: Document, console: Console) -> None:
    if not doc.sections:
        console.print(Text(doc.empty.lower() if doc.empty else "nothing to show"))
        return
    console.print(Text(doc.title, style="bold"), Text(" · " + doc.subtitle if doc.subtitle else "", style="dim"))
    if doc.facts:
        console.print(Text(" · ".join(f"{k} {v}" for k, v in doc.facts), style="dim"))
    narrow = console.width < WIDE
    for section in doc.sections:
        _section(section, console, narrow)
    if doc.callout:
        console.print(Text(doc.callout, style="dim"))


def render_terminal(report: object, console: Console, job_id: str | None = None) -> None:
    """A report (controller/report.py) in the terminal."""
    from edgebench.controller.render.tables import report_document

    render_document(report_document(report, job_id), console)  # type: ignore[arg-type]
