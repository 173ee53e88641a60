"""Markdown rendering of a Report (GitHub-flavoured tables, numbers right-aligned)."""

from __future__ import annotations

from edgebench.controller.render import format as f
from edgebench.controller.report import Report


def md_table(headers: list[str], rows: list[list[str]], numeric: list[bool] | None = None) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    align = ["---:" if numeric and numeric[i] else ":---" for i in range(len(headers))]
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    out: list[str] = ["# edgebench report", ""]
    out += [" · ".join(f"**{k}:** {v}" for k, v in f.header_facts(report)), ""]
    if not report.cells:
        return "\n".join([*out, "No results match the selection.", ""])
    out += [f"> {report.utilisation_meaning} *n/a*: not applicable (CPU-only result); *–*: not measured.", ""]

    out += ["## Machines", "", md_table(f.MACHINE_HEADERS, f.machine_rows(report)), ""]
    out += ["### Library versions", "", md_table(*f.library_table(report)), ""]

    fleets = [t for t in report.fleet_tables() if len(t.devices) > 1]
    if fleets:
        out += ["## Fleet view", "",
                "img/s ± sd of each backend on each device at its fastest configuration (batch size in "
                "brackets); **bold** is the fastest backend on the device.", ""]
        for fleet in fleets:
            rows = []
            for device in fleet.devices:
                win = fleet.winner(device)
                cells = []
                for b in fleet.backends:
                    c = fleet.cells.get((device, b))
                    text = f.fleet_text(c)
                    cells.append(f"**{text}**" if c is not None and c is win else text)
                rows.append([device, *cells, f.winner_text(fleet, device)])
            out += [f"### {f.section_title(fleet.workload, fleet.mode)}", "",
                    md_table(["device", *fleet.backends, "fastest"], rows,
                             [False, *([True] * len(fleet.backends)), False]), ""]
            out += [f"- ⚠ {note}" for note in fleet.notes]
            if fleet.notes:
                out.append("")

    for section in report.device_sections():
        d = section.device
        out += [f"## {d.device_id} — {d.gpus if d.has_gpu else 'CPU only'}", ""]
        out += [f"{d.cpu}, {d.cores}, {f.fmt_bytes(d.ram_bytes)} RAM; {d.os}; Python {d.python}"
                + (f"; {d.driver}" if d.driver else ""), ""]
        pivot_rows = [[f.section_title(r.workload, r.mode), f.pivot_label(r),
                       *[f.pivot_text(r.cells.get(b)) for b in section.backends]] for r in section.pivot]
        out += [f"### img/s per backend (± sd; {report.baseline} is the baseline)", "",
                md_table(["workload", "config", *section.backends], pivot_rows,
                         [False, False, *([True] * len(section.backends))]), ""]
        columns = f.detail_columns(section.cells)
        rows = [[col.text(c) for col in columns] for c in section.cells]
        out += ["### Details", "", md_table([c.header for c in columns], rows, [c.numeric for c in columns]), ""]

    scaling = report.scaling_tables()
    if scaling:
        out += ["## Scaling", "", "speedup = img/s(N) / img/s(base); efficiency = 100 % × img/s(N) / "
                "(N / base × img/s(base)), base = the smallest GPU count measured.", ""]
        for sc in scaling:
            out += [f"### {sc.device_id} · {f.section_title(sc.workload, sc.mode)} · {sc.backend} · "
                    f"bs {sc.batch_size} per GPU · {sc.precision}", "",
                    md_table(f.scaling_header(), [f.scaling_cells(r) for r in sc.rows], [True] * 4), ""]

    used = sorted({flag for c in report.cells for flag in c.flags})
    if used or report.notes or any(f.preallocates(c) and not c.cpu_only for c in report.cells):
        out += ["## Flags and notes", ""]
        out += [f"- **{flag}**: {f.FLAG_MEANINGS.get(flag, '')}" for flag in used]
        if any(f.preallocates(c) and not c.cpu_only for c in report.cells):
            out.append(f"- {f.PREALLOC_MEANING}")
        out += [f"- {note}" for note in report.notes]
        out.append("")
    return "\n".join(out)
