"""Markdown rendering of a document (GitHub-flavoured tables, numbers right-aligned).

Every text is escaped: GitHub renders inline HTML and emphasis inside
Markdown, and device ids, reasons and library versions come from devices.
"""

from __future__ import annotations

import re

from edgebench.controller.render.table import Document, Notes, Section, Table, Value

# What can start markup in GitHub Markdown: emphasis, code, links and images
# (without [ and ], "(" and "!" are plain), table cells, backslash escapes;
# <, > and & become entities so that no inline HTML survives.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def esc(text: str, cell: bool = False) -> str:
    """Plain text safe in a Markdown paragraph or (``cell``) a table cell: no markup, no HTML, one line."""
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(text.splitlines())
    if not cell and text[:1] in ("#", "+", "-", "="):
        text = "\\" + text  # no heading or list from a value at a line's start
    return text


def _cell(v: Value) -> str:
    body = esc(v.text, cell=True)
    if v.style == "win" and body:
        body = f"**{body}**"
    if v.extra:
        body = f"{body} {esc(v.extra, cell=True)}" if body else esc(v.extra, cell=True)
    return body


def md_table(table: Table) -> str:
    headers = [esc(c.header, cell=True) for c in table.columns]
    align = ["---:" if c.numeric else ":---" for c in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _section(section: Section, level: int) -> list[str]:
    if section.blocks and all(not isinstance(b, (Table, Notes)) for b in section.blocks):
        return []  # charts only: nothing to show in text
    h = "#" * level
    title = esc(section.title)
    if section.tags:
        title += " — " + ", ".join(esc(t) for t in section.tags)
    out = [f"{h} {title}", ""]
    if section.meta:
        out += [esc(section.meta), ""]
    if section.lead:
        out += [esc(section.lead), ""]
    for block in section.blocks:
        if isinstance(block, Table):
            if block.title and block.title != section.title:
                out += [f"{h}# {esc(block.title)}", ""]
            if block.lead:
                out += [esc(block.lead), ""]
            out += [md_table(block), ""]
            if block.notes:
                out += [*(f"- ⚠ {esc(n)}" for n in block.notes), ""]
        elif isinstance(block, Notes):
            out += [f"- **{esc(label)}**: {esc(body)}" if label else f"- {esc(body)}" for label, body in block.items]
            out.append("")
    return out


def render_document(doc: Document, level: int = 2) -> str:
    out = [f"{'#' * (level - 1)} {esc(doc.title)}", ""]
    if doc.facts:
        out += [" · ".join(f"**{esc(k)}:** {esc(v)}" for k, v in doc.facts), ""]
    if not doc.sections:
        return "\n".join([*out, esc(doc.empty) if doc.empty else "", ""])
    if doc.callout:
        out += [f"> {esc(doc.callout)}", ""]
    for section in doc.sections:
        out += _section(section, level)
    return "\n".join(out)


def render_markdown(report: object, job_id: str | None = None) -> str:
    """A report (controller/report.py) as Markdown."""
    from edgebench.controller.render.tables import report_document

    return render_document(report_document(report, job_id))  # type: ignore[arg-type]
