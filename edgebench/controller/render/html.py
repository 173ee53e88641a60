"""One self-contained HTML page: tables and inline SVG charts, no network needed to view it.

Nothing is fetched when the page opens: the CSS is inline, the charts are
inline SVG drawn by matplotlib (controller/render/charts.py), and there is
no script.
"""

from __future__ import annotations

from html import escape

from edgebench.controller.render import charts
from edgebench.controller.render import format as f
from edgebench.controller.report import Cell, DeviceSection, Report

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


def _table(headers: list[str], rows: list[list[str]], numeric: list[bool] | None = None) -> str:
    """A table of plain-text cells (escaped here); numeric columns are right-aligned."""

    def cls(i: int) -> str:
        return ' class="num"' if numeric and numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_value_html(c)}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _value_html(text: str) -> str:
    if text == f.NA:
        return '<span class="na">n/a</span>'
    return _e(text)


def _rate_html(cell: Cell | None, with_config: bool = False) -> str:
    if cell is None:
        return ""
    if not cell.ok:
        cls = "oom" if cell.outcome == "OOM" else "fail"
        label = "Out of memory" if cell.outcome == "OOM" else f.outcome_text(cell)
        extra = f' <span class="muted">(bs {cell.batch_size})</span>' if with_config else ""
        return f'<span class="{cls}" title="{_e(cell.reason or "")}">{_e(label)}</span>{extra}'
    text = _e(f.fmt_rate(cell.img_per_s))
    if cell.sd is not None:
        text += f' <span class="sd">± {_e(f.fmt_sd(cell.sd))}</span>'
    if with_config:
        cfg = f"bs {cell.batch_size}" + ("" if cell.precision == "fp32" else f", {cell.precision}")
        text += f' <span class="muted">({_e(cfg)})</span>'
    return text


def _flags_html(cell: Cell) -> str:
    return "".join(f'<span class="flag" title="{_e(f.FLAG_MEANINGS.get(x, ""))}">{_e(x)}</span>' for x in cell.flags)


def _detail_table(cells: list[Cell]) -> str:
    columns = f.detail_columns(cells)
    rows = []
    for c in cells:
        tds = []
        for col in columns:
            if col.key == "img_per_s":
                content = _rate_html(c).split(' <span class="sd">')[0] if c.ok else _rate_html(c)
            elif col.key == "flags":
                tds.append(f'<td class="flags">{_flags_html(c)}</td>')
                continue
            else:
                content = _value_html(col.text(c))
            tds.append(f'<td class="num">{content}</td>' if col.numeric else f"<td>{content}</td>")
        rows.append(tds)
    head = "".join(f'<th class="num">{_e(c.header)}</th>' if c.numeric else f"<th>{_e(c.header)}</th>"
                   for c in columns)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table class="detail"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def render_html(report: Report, job_id: str | None = None, title: str = "edgebench report") -> str:
    parts: list[str] = []
    toc: list[tuple[str, str]] = []
    facts = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in f.header_facts(report))
    machines_line = " · ".join(
        f"{d.device_id}: {d.gpus if d.has_gpu else 'CPU only'}" for d in report.devices.values())
    header = (f'<header class="top"><div class="wrap"><h1>{_e(title)}</h1>'
              f'<div class="sub">{_e(machines_line or "no devices")}</div>'
              f'<dl class="facts">{facts}</dl></div></header>')

    if not report.cells:
        parts.append('<section><p class="lead">No results match the selection.</p></section>')
    else:
        parts.append(f'<div class="callout"><strong>Reading GPU utilisation.</strong> '
                     f'{_e(report.utilisation_meaning)} SM clock, power and energy per image sit beside it in '
                     f'every table. <span class="na">n/a</span> marks metrics that do not apply (CPU-only '
                     f'results); – marks metrics a device did not report.</div>')
        parts.append(_machines(report, toc))
        parts.append(_fleet(report, toc))
        for section in report.device_sections():
            parts.append(_device(report, section, toc))
        parts.append(_scaling(report, toc))
        parts.append(_timeseries(report, job_id, toc))
        parts.append(_notes(report, toc))

    nav = "".join(f'<a href="#{_e(anchor)}">{_e(label)}</a>' for anchor, label in toc)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · {_e(report.selection.describe())}</title>"
        f'<meta name="generator" content="edgebench controller report">'
        f"<style>{CSS}</style></head><body>{header}"
        f'<nav class="toc"><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{"".join(parts)}</main>'
        f'<footer><div class="wrap">Generated by <code>controller report --format html</code> at '
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC from {_e(report.store_url or 'the results store')}. "
        "img/s is images over the measured window (warm-up, build, compile and validation excluded) of the "
        "median repeat; ± is the standard deviation over repeats, or over per-batch img/s for a single run. "
        "Energy per image divides the GPU energy of all measured windows by the images they processed."
        "</div></footer></body></html>\n"
    )


def _machines(report: Report, toc: list[tuple[str, str]]) -> str:
    toc.append(("machines", "Machines"))
    libs = _table(*f.library_table(report)).replace("<td>", '<td class="flags">')
    return ('<section id="machines"><h2>Machines</h2><p class="lead">Fingerprints recorded with the results '
            "(the newest per device).</p>"
            + _table(f.MACHINE_HEADERS, f.machine_rows(report)).replace("<table>", '<table class="wrap">')
            + f"<h3>Library versions per backend</h3>{libs}</section>")


def _fleet(report: Report, toc: list[tuple[str, str]]) -> str:
    fleets = [t for t in report.fleet_tables() if len(t.devices) > 1]
    if not fleets:
        return ""
    toc.append(("fleet", "Fleet view"))
    out = ['<section id="fleet"><h2>Fleet view</h2><p class="lead">Which box and which framework win: img/s '
           "± sd of each backend on each device at its fastest configuration (batch size in brackets). The "
           "fastest backend per device is highlighted.</p>"]
    for t in fleets:
        rows = []
        for device in t.devices:
            win = t.winner(device)
            tds = [f"<td>{_e(device)}</td>"]
            for b in t.backends:
                c = t.cells.get((device, b))
                cls = "num win" if c is not None and c is win else "num"
                tds.append(f'<td class="{cls}">{_rate_html(c, with_config=True)}</td>')
            tds.append(f"<td>{_e(f.winner_text(t, device))}</td>")
            rows.append(tds)
        head = "".join(["<th>device</th>", *[f'<th class="num">{_e(b)}</th>' for b in t.backends],
                        "<th>fastest</th>"])
        body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
        out.append(f"<h3>{_e(f.section_title(t.workload, t.mode))}</h3>"
                   f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        if t.notes:
            out.append('<ul class="notes">' + "".join(f"<li>⚠ {_e(n)}</li>" for n in t.notes) + "</ul>")
        if len(t.devices) > 1:
            out.append(_figure(charts.fleet_chart(t), f"{t.workload}: img/s per device and backend, log scale; "
                                                      "whiskers ± sd."))
    out.append("</section>")
    return "".join(out)


def _device(report: Report, section: DeviceSection, toc: list[tuple[str, str]]) -> str:
    d = section.device
    anchor = f"device-{_slug(d.device_id)}"
    toc.append((anchor, d.device_id))
    chips = "".join(f'<span class="chip">{_e(t)}</span>' for t in d.tags)
    meta = (f"{_e(d.gpus if d.has_gpu else 'CPU only')} · {_e(d.cpu)} ({_e(d.cores)}) · "
            f"{_e(f.fmt_bytes(d.ram_bytes))} RAM · {_e(d.os)}" + (f" · {_e(d.driver)}" if d.driver else ""))
    pivot_rows = []
    for r in section.pivot:
        tds = [f"<td>{_e(f.section_title(r.workload, r.mode))}</td>", f"<td>{_e(f.pivot_label(r))}</td>"]
        oks = [c for c in r.cells.values() if c.ok]
        best = max(oks, key=lambda c: c.img_per_s or 0.0) if len(oks) > 1 else None
        for b in section.backends:
            c = r.cells.get(b)
            ratio = ""
            if c is not None and c.ok and c.ratio is not None and b != report.baseline:
                ratio = f' <span class="muted">({_e(f.fmt_ratio(c.ratio))})</span>'
            cls = "num win" if c is not None and c is best else "num"
            tds.append(f'<td class="{cls}">{_rate_html(c)}{ratio}</td>')
        pivot_rows.append(tds)
    head = "".join(["<th>workload</th>", "<th>config</th>",
                    *[f'<th class="num">{_e(b)}{" (baseline)" if b == report.baseline else ""}</th>'
                      for b in section.backends]])
    pivot = (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
             + "".join("<tr>" + "".join(r) + "</tr>" for r in pivot_rows) + "</tbody></table></div>")
    out = [f'<section id="{_e(anchor)}"><h2>{_e(d.device_id)} {chips}</h2><div class="device-meta">{meta}</div>',
           f"<h3>img/s per backend and batch size</h3>"
           f'<p class="lead">± sd; in brackets the speed ratio against {_e(report.baseline)}. The fastest backend '
           f"per row is highlighted.</p>{pivot}",
           _figure(charts.figure4(section), "Speed and utilisation per backend and workload (the 2019 study's "
                                            "Figure 4). " + ("GPU utilisation is the fraction of time any kernel "
                                                             "ran; read it beside SM clock and power below."
                                                             if not all(c.cpu_only for c in section.cells) else
                                                             "CPU-only device: GPU utilisation does not apply."))]
    batch = charts.batch_chart(section)
    if batch:
        out.append(_figure(batch, "img/s against batch size (log-log); a red × marks a batch size that ran out "
                                  "of memory."))
    out.append(f"<h3>Details</h3>{_detail_table(section.cells)}</section>")
    return "".join(out)


def _scaling(report: Report, toc: list[tuple[str, str]]) -> str:
    tables = report.scaling_tables()
    if not tables:
        return ""
    toc.append(("scaling", "Scaling"))
    out = ['<section id="scaling"><h2>Scaling</h2><p class="lead">speedup = img/s(N) / img/s(base); efficiency = '
           "100 % × img/s(N) / (N / base × img/s(base)), base = the smallest GPU count measured.</p>"]
    for sc in tables:
        rows = [f.scaling_cells(r) for r in sc.rows]
        out.append(f"<h3>{_e(sc.device_id)} · {_e(f.section_title(sc.workload, sc.mode))} · {_e(sc.backend)} · "
                   f"bs {sc.batch_size} per GPU · {_e(sc.precision)}</h3>"
                   f'<div class="pair"><div>{_table(f.scaling_header(), rows, [True] * 4)}</div>'
                   + _figure(charts.scaling_chart(sc), "measured img/s against linear scaling from the base")
                   + "</div>")
    out.append("</section>")
    return "".join(out)


def _timeseries(report: Report, job_id: str | None, toc: list[tuple[str, str]]) -> str:
    cell = report.timeseries_job(job_id)
    if cell is None:
        if job_id:
            return (f'<section id="timeseries"><h2>Time series</h2><p class="lead">No job {_e(job_id)} (or no '
                    "unique match) in this selection.</p></section>")
        return ""
    ts = report.timeseries.get((cell.device_id, cell.job_id))
    toc.append(("timeseries", "Time series"))
    what = (f"job <code>{_e(cell.job_id)}</code> on {_e(cell.device_id)}: {_e(cell.backend)}, "
            f"{_e(f.cell_label(cell))}, bs {cell.batch_size}, {_e(cell.precision)}")
    if ts is None:
        return (f'<section id="timeseries"><h2>Time series</h2><p class="lead">{what}: no time series was '
                "stored with this result.</p></section>")
    facts = []
    if cell.ok:
        facts.append(f"{f.fmt_rate(cell.img_per_s, cell.sd)} img/s")
    if not cell.cpu_only:
        facts += [f"GPU util {f.fmt_num(cell.gpu_util_pct)} %", f"SM {f.fmt_num(cell.sm_clock_mhz)} MHz",
                  f"{f.fmt_num(cell.power_w)} W", f"{f.fmt_mj(cell.energy_j_per_img)} mJ/img",
                  f"peak GPU memory {f.fmt_bytes(cell.peak_mem_bytes)}"]
        if cell.mem_policy:
            facts.append(f"memory policy: {cell.mem_policy}")
    else:
        facts.append(f"CPU {f.fmt_num(cell.cpu_pct)} % of one core")
    return (f'<section id="timeseries"><h2>Time series</h2><p class="lead">{what}. Inside the measured window: '
            f"{_e(' · '.join(facts))}. Choose another job with <code>--job JOB</code>.</p>"
            + _figure(charts.timeseries_chart(cell, ts), "Sampled over the whole job; the shaded spans are the "
                                                          "measured windows the tables summarise.")
            + "</section>")


def _notes(report: Report, toc: list[tuple[str, str]]) -> str:
    used = sorted({flag for c in report.cells for flag in c.flags})
    prealloc = any(f.preallocates(c) and not c.cpu_only for c in report.cells)
    if not used and not report.notes and not prealloc:
        return ""
    toc.append(("notes", "Flags & notes"))
    items = [f'<li><span class="flag">{_e(flag)}</span> {_e(f.FLAG_MEANINGS.get(flag, ""))}</li>' for flag in used]
    if prealloc:
        items.append(f"<li>{_e(f.PREALLOC_MEANING)}</li>")
    items += [f"<li>{_e(n)}</li>" for n in report.notes]
    return f'<section id="notes"><h2>Flags &amp; notes</h2><ul class="notes">{"".join(items)}</ul></section>'
