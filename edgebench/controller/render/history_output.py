"""``controller report --history`` output in each format (the command stays a thin caller)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgebench.controller.groups import GroupBy
from edgebench.controller.history import History, build_history, explain
from edgebench.controller.render.table import Document
from edgebench.controller.selection import Selection, select_facts
from edgebench.controller.store import ResultStore


def load_history(store: ResultStore, selection: Selection, group_by: GroupBy = GroupBy.hardware,
                 exclude_suspect: bool = False) -> History:
    return explain(build_history(select_facts(store, selection), group_by=group_by,
                                 exclude_suspect=exclude_suspect), store)


def history_doc(store: ResultStore, selection: Selection, group_by: GroupBy = GroupBy.hardware,
                exclude_suspect: bool = False) -> tuple[History, Document]:
    from edgebench.controller.render.comparisons import history_document

    hist = load_history(store, selection, group_by, exclude_suspect)
    return hist, history_document(hist, selection.describe(), store.url)


def render_history(store: ResultStore, selection: Selection, fmt: str, group_by: GroupBy = GroupBy.hardware,
                   exclude_suspect: bool = False, out: Path | None = None,
                   console: Console | None = None) -> str | None:
    """The history as text in ``fmt`` (terminal, md, csv, json, html); the terminal format prints
    itself (to ``out`` if given) and returns None."""
    from edgebench.controller.render import comparisons

    hist, doc = history_doc(store, selection, group_by, exclude_suspect)
    if fmt == "json":
        return comparisons.history_json(hist)
    if fmt == "md":
        from edgebench.controller.render.markdown import render_document

        return render_document(doc)
    if fmt == "csv":
        from edgebench.controller.render.tabular import table_csv

        tables = [t for t in doc.tables() if t.key.startswith("history-")]
        return "".join(table_csv(t) for t in tables[:1]) if len(tables) == 1 else "\n".join(
            f"# {t.title}\n{table_csv(t)}" for t in tables)
    if fmt == "html":
        from edgebench.controller.render.html import render_document as html

        return html(doc, generator="controller report --history --format html")
    from edgebench.controller.render.terminal import render_document as terminal

    if out is None:
        terminal(doc, console or Console())
    else:
        with out.open("w", encoding="utf-8") as fh:
            terminal(doc, Console(file=fh, width=200, color_system=None))
    return None
