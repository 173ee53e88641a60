"""What the command lines print, in one place: tables for people, plain rows for
pipes, one JSON document for scripts, and diagnostics on stderr.

Every value a table or a message shows may come from the network (job ids,
device ids, reasons a device gave), so it goes through :func:`plain` (control
characters written as escapes: no cursor moves, no forged lines) and, where
rich renders it, :func:`markup` (rich markup escaped: ``[red]`` in a reason is
text, not a style).

On a terminal a table is a rich table whose cells wrap instead of being cut
(``overflow="fold"``), so identifiers and paths are whole even at 80 columns.
Anywhere else (a pipe, a file, a CI log) it is a header line and one
tab-separated line per row, every value in full, so ``grep``, ``cut`` and
``awk`` work; ``--json`` prints one JSON document instead.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgebench.common import jsonout

# C0 and C1 control characters, DEL, and the Unicode bidirectional overrides
# (U+202A-U+202E, U+2066-U+2069), which can make a line read differently from
# the bytes it holds.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(value: object) -> str:
    """``value`` as one line of text, every control character written as its escape (``\\x1b``, ``\\n``)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def markup(value: object) -> str:
    """:func:`plain`, with rich markup escaped too: safe inside a rich-rendered message or table cell."""
    return escape(plain(value))


@dataclass(frozen=True)
class Column:
    """One column: the record key it shows, its header, how a value is written and coloured."""

    key: str
    header: str = ""
    fmt: Callable[[Any], str] | None = None
    style: Callable[[Any], str | None] | None = None  # terminal only: a rich style for the value

    def text(self, record: Mapping[str, Any]) -> str:
        value = record.get(self.key)
        if self.fmt is not None:
            return self.fmt(value)
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return str(value)


class Output:
    """One command's output. ``as_json``: a JSON document goes to stdout and tables are not printed."""

    def __init__(self, as_json: bool = False, console: Console | None = None, err: Console | None = None):
        self.as_json = as_json
        self.console = console or Console(highlight=False)
        self.err = err or Console(stderr=True, highlight=False)

    @property
    def terminal(self) -> bool:
        return self.console.is_terminal

    def for_renderables(self) -> Console:
        """The console for rich layouts that have no plain form (the terminal report): off a terminal, rich
        would lay them out at 80 columns and cut labels; 200 keeps them whole in a log or a file."""
        if self.terminal:
            return self.console
        return Console(file=self.console.file, width=200, highlight=False, color_system=None)

    def json(self, doc: object) -> None:
        """The one JSON document of a ``--json`` command (datetimes and paths as strings)."""
        sys.stdout.write(jsonout.dumps(doc, default=str) + "\n")
        sys.stdout.flush()

    def print(self, message: str) -> None:
        """A line of rich markup for people (put untrusted parts through :func:`markup`); never cut.

        Under ``--json`` it goes to stderr, so stdout stays one document."""
        target = self.err if self.as_json else self.console
        target.print(message, soft_wrap=True, highlight=False)

    def note(self, message: str) -> None:
        """A diagnostic (rich markup): always stderr."""
        self.err.print(message, soft_wrap=True, highlight=False)

    def warn(self, message: str) -> None:
        self.note(f"[yellow]warning:[/yellow] {message}")

    def error(self, message: str) -> None:
        self.note(f"[red]error:[/red] {message}")

    def json_line(self, doc: object) -> None:
        """One compact JSON object per line (a stream: ``--watch --json``)."""
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[Column], records: Iterable[Mapping[str, Any]], title: str = "") -> None:
        """Rows for people: a rich table on a terminal, plain tab-separated rows elsewhere."""
        records = list(records)
        if self.terminal:
            self.console.print(render_table(columns, records, title))
            return
        if title:
            self.note(markup(title))
        self.console.file.write("\t".join(c.header or c.key for c in columns) + "\n")
        for record in records:
            self.row(columns, record)

    def row(self, columns: Sequence[Column], record: Mapping[str, Any]) -> None:
        """One plain, tab-separated row, every value in full."""
        self.console.file.write("\t".join(plain(c.text(record)).replace("\t", "\\t") for c in columns) + "\n")
        self.console.file.flush()


def render_table(columns: Sequence[Column], records: Iterable[Mapping[str, Any]], title: str = "") -> Table:
    """A rich table of ``records``; cells fold instead of being cut, every value escaped."""
    table = Table(title=markup(title) if title else None)
    for c in columns:
        table.add_column(c.header or c.key, overflow="fold")
    for record in records:
        table.add_row(*(_styled(c, record) for c in columns))
    return table


def _styled(column: Column, record: Mapping[str, Any]) -> str:
    cell = markup(column.text(record))
    style = column.style(record.get(column.key)) if column.style else None
    return f"[{style}]{cell}[/{style}]" if style else cell
