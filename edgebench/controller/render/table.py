"""The format-neutral document every renderer draws: sections of titled tables with typed values.

controller/render/tables.py builds one :class:`Document` from a report (and
controller/compare.py, controller/history.py from theirs); the terminal,
Markdown, HTML and CSV renderers only add markup to it, so they cannot
disagree about a number, a label or which cell is highlighted.

A :class:`Value` carries the text a reader sees and the raw value a machine
reads (CSV, JSON), plus a style the renderers map to their own markup. Every
string in it is plain text: renderers escape it (device ids, reasons and
library versions come from devices and are untrusted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Style = Literal["", "win", "bad", "warn", "na", "muted", "strong"]


@dataclass(frozen=True)
class Value:
    text: str = ""  # what a reader sees
    raw: Any = None  # the unformatted value (CSV, JSON); None: empty
    style: Style = ""
    extra: str = ""  # shown after the text, de-emphasised ("± 12 (1.05x)")
    title: str = ""  # a longer explanation (a tooltip in HTML)
    chips: tuple[str, ...] = ()  # labels shown as separate chips (flags); text is their joined form

    @property
    def full_text(self) -> str:
        return f"{self.text} {self.extra}".strip() if self.extra else self.text


def text(value: object, style: Style = "", title: str = "") -> Value:
    s = "" if value is None else str(value)
    return Value(text=s, raw=value, style=style, title=title)


def chips(items: Sequence[str], titles: dict[str, str] | None = None) -> Value:
    meaning = "; ".join(f"{i}: {titles[i]}" for i in items if titles and i in titles)
    return Value(text=", ".join(items), raw=", ".join(items), chips=tuple(items), title=meaning)


@dataclass(frozen=True)
class Column:
    key: str  # machine name, with its unit (img_per_s, energy_j_per_img)
    header: str  # what the heading says
    numeric: bool = False  # right-aligned
    unit: str = ""


@dataclass(frozen=True)
class Chart:
    """A chart the HTML renderer draws (text formats skip it): ``kind`` names the drawing function."""

    kind: str
    data: Any
    caption: str


@dataclass(frozen=True)
class Table:
    key: str  # unique in the document (anchors, JSON)
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Value, ...], ...]
    lead: str = ""  # one or two sentences above the table
    notes: tuple[str, ...] = ()  # below the table: what makes it not like for like
    chart: Chart | None = None  # drawn below the table (HTML)
    compact: tuple[str, ...] = ()  # column keys a narrow terminal keeps (empty: all)

    def column(self, key: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.key == key)


@dataclass(frozen=True)
class Notes:
    """A list of labelled notes (flags and what they mean, report notes)."""

    title: str
    items: tuple[tuple[str, str], ...]  # (label, text); label may be empty


Block = Table | Chart | Notes


@dataclass(frozen=True)
class Section:
    key: str  # anchor
    title: str
    lead: str = ""
    meta: str = ""  # a line under the heading (a device's hardware)
    tags: tuple[str, ...] = ()
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str = ""
    facts: tuple[tuple[str, str], ...] = ()  # (label, value) under the title
    callout: str = ""  # one highlighted paragraph before the sections
    sections: tuple[Section, ...] = ()
    empty: str = ""  # shown instead of the sections when there is nothing to show
    footer: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]
