"""One self-contained HTML page from a document: tables and inline SVG charts, no network needed.

Nothing is fetched when the page opens: the CSS is inline, the charts are
inline SVG drawn by matplotlib (controller/render/charts.py), and there is
no script. Every text is escaped here (device ids, reasons and library
versions come from devices).
"""

from __future__ import annotations

from html import escape

from edgebench.controller.render.drawing import draw
from edgebench.controller.render.table import Chart, Document, Notes, Section, Table, Value

CSS = """
:root { --ink:#1f2328; --muted:#656d76; --line:#d8dee4; --soft:#f6f8fa; --accent:#0b5cad;
        --bad:#cf222e; --bad-bg:#ffebe9; --warn:#9a6700; --warn-bg:#fff8c5; --win-bg:#dafbe1; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 14px/1.5 -apple-system, "Segoe UI", "Inter", "Helvetica Neue", "Liberation Sans", "DejaVu Sans",
             Arial, sans-serif; }
header.top { background: linear-gradient(120deg, #0d1b2a 0%, #1b3a5c 100%); color: #fff; padding: 28px 0 22px; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 28px; }
header.top h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header.top .sub { color: #c9d6e3; font-size: 15px; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 10px 24px;
           margin: 18px 0 0; }
dl.facts div { min-width: 0; }
dl.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: #9fb3c8; }
dl.facts dd { margin: 2px 0 0; font-size: 14px; overflow-wrap: anywhere; }
nav.toc { border-bottom: 1px solid var(--line); background: var(--soft); font-size: 13px; }
nav.toc .wrap { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 9px; padding-bottom: 9px; }
nav.toc a { color: var(--accent); text-decoration: none; }
main { padding: 10px 0 40px; }
section { margin-top: 34px; }
h2 { font-size: 20px; margin: 0 0 4px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 6px; }
p.lead { color: var(--muted); margin: 6px 0 12px; max-width: 900px; }
.callout { border-left: 4px solid #d4a72c; background: var(--warn-bg); padding: 10px 14px; margin: 18px 0 0;
           border-radius: 0 6px 6px 0; font-size: 13.5px; }
.scroll { overflow-x: auto; margin: 8px 0 6px; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eaeef2; text-align: left; white-space: nowrap;
         vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; color: #424a53; border-bottom: 1px solid var(--line);
           position: sticky; top: 0; }
tbody tr:last-child td { border-bottom: none; }
tbody tr:hover td { background: #f8fafc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.flags { white-space: normal; min-width: 130px; }
table.wrap td { white-space: normal; }
table.detail th, table.detail td { padding: 5px 7px; font-size: 12.5px; }
td.win { background: var(--win-bg); font-weight: 650; }
td.warn { background: var(--warn-bg); }
.warnmark { color: var(--warn); font-weight: 650; }
.oom, .fail { display: inline-block; color: var(--bad); background: var(--bad-bg); border-radius: 4px;
              padding: 0 6px; font-weight: 650; font-size: 12px; }
.na { color: #8c959f; }
.flag { display: inline-block; color: var(--warn); background: var(--warn-bg); border: 1px solid #eed888;
        border-radius: 10px; padding: 0 7px; font-size: 11.5px; margin: 0 3px 2px 0; white-space: nowrap; }
.sd { color: var(--muted); }
.muted { color: var(--muted); }
ul.notes { margin: 6px 0 0; padding-left: 20px; color: #424a53; font-size: 13px; }
figure { margin: 14px 0 6px; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 28px; align-items: start; }
.pair figure { margin-top: 8px; }
@media (max-width: 900px) { .pair { grid-template-columns: minmax(0, 1fr); } }
figure svg.chart { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.device-meta { color: var(--muted); margin: 2px 0 8px; }
.chip { display: inline-block; background: #eef2f6; color: #424a53; border-radius: 10px; padding: 0 8px;
        font-size: 12px; margin-right: 4px; }
footer { border-top: 1px solid var(--line); color: var(--muted); font-size: 12.5px; padding: 16px 0 28px; }
code { font: 12.5px ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, monospace; background: var(--soft);
       padding: 1px 4px; border-radius: 4px; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _value(v: Value) -> str:
    if v.chips:
        return "".join(f'<span class="flag">{_e(c)}</span>' for c in v.chips)
    body = _e(v.text)
    if v.style == "bad" and v.text:
        body = f'<span class="fail">{body}</span>'
    elif v.style in ("na", "muted") and v.text:
        body = f'<span class="na">{body}</span>'
    if v.extra:
        extra = _e(v.extra).replace("⚠", '<span class="warnmark">⚠</span>')
        body += f' <span class="sd">{extra}</span>'
    return body


def _td(v: Value, numeric: bool) -> str:
    classes = [c for c in ("num" if numeric else "", "win" if v.style == "win" else "",
                           "warn" if v.style == "warn" else "", "flags" if v.chips else "") if c]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    title = f' title="{_e(v.title)}"' if v.title else ""
    return f"<td{cls}{title}>{_value(v)}</td>"


def html_table(table: Table) -> str:
    head = "".join(f'<th class="num">{_e(c.header)}</th>' if c.numeric else f"<th>{_e(c.header)}</th>"
                   for c in table.columns)
    body = "".join("<tr>" + "".join(_td(v, c.numeric) for v, c in zip(row, table.columns)) + "</tr>"
                   for row in table.rows)
    wide = len(table.columns) > 9
    cls = ' class="detail"' if wide else ""
    return (f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _figure(chart: Chart) -> str:
    svg = draw(chart)
    return f"<figure>{svg}<figcaption>{_e(chart.caption)}</figcaption></figure>" if svg else ""


def _section(section: Section) -> str:
    chips = "".join(f'<span class="chip">{_e(t)}</span>' for t in section.tags)
    out = [f'<section id="{_e(section.key)}"><h2>{_e(section.title)} {chips}</h2>']
    if section.meta:
        out.append(f'<div class="device-meta">{_e(section.meta)}</div>')
    if section.lead:
        out.append(f'<p class="lead">{_e(section.lead)}</p>')
    for block in section.blocks:
        if isinstance(block, Table):
            if block.title and block.title != section.title:
                out.append(f"<h3>{_e(block.title)}</h3>")
            if block.lead:
                out.append(f'<p class="lead">{_e(block.lead)}</p>')
            out.append(html_table(block))
            if block.notes:
                out.append('<ul class="notes">' + "".join(f"<li>⚠ {_e(n)}</li>" for n in block.notes) + "</ul>")
            if block.chart is not None:
                out.append(_figure(block.chart))
        elif isinstance(block, Chart):
            out.append(_figure(block))
        elif isinstance(block, Notes):
            items = "".join(f'<li><span class="flag">{_e(label)}</span> {_e(body)}</li>' if label
                            else f"<li>{_e(body)}</li>" for label, body in block.items)
            out.append(f'<ul class="notes">{items}</ul>')
    out.append("</section>")
    return "".join(out)


def render_document(doc: Document, generator: str = "controller report --format html") -> str:
    facts = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in doc.facts)
    header = (f'<header class="top"><div class="wrap"><h1>{_e(doc.title)}</h1>'
              f'<div class="sub">{_e(doc.subtitle)}</div>'
              f'<dl class="facts">{facts}</dl></div></header>')
    parts: list[str] = []
    if not doc.sections:
        parts.append(f'<section><p class="lead">{_e(doc.empty)}</p></section>')
    else:
        if doc.callout:
            parts.append(f'<div class="callout">{_e(doc.callout)}</div>')
        parts += [_section(s) for s in doc.sections]
    nav = "".join(f'<a href="#{_e(s.key)}">{_e(s.title)}</a>' for s in doc.sections)
    subject = dict(doc.facts).get("selection", "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(doc.title)}{' · ' + _e(subject) if subject else ''}</title>"
        f'<meta name="generator" content="edgebench {_e(generator)}">'
        f"<style>{CSS}</style></head><body>{header}"
        f'<nav class="toc"><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{"".join(parts)}</main>'
        f'<footer><div class="wrap">Generated by <code>{_e(generator)}</code>. {_e(doc.footer)}'
        "</div></footer></body></html>\n"
    )


def render_html(report: object, job_id: str | None = None, title: str = "edgebench report") -> str:
    """A report (controller/report.py) as one self-contained page."""
    from edgebench.controller.render.tables import report_document

    return render_document(report_document(report, job_id, title))  # type: ignore[arg-type]
