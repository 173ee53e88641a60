"""A report's views as one format-neutral document (controller/render/table.py).

Every table of every format is built here, once: which cell is the fastest
(and whether it can be called that), the n/a rule for GPU metrics of CPU-only
results (format.Column), the configuration a mixed table names in brackets,
what a failed cell shows. The renderers only add markup.
"""

from __future__ import annotations

from edgebench.controller.cells import Cell
from edgebench.controller.render import format as f
from edgebench.controller.render.inference_tables import inference_section
from edgebench.controller.render.table import (
    Chart,
    Column,
    Document,
    Notes,
    Section,
    Style,
    Table,
    Value,
    chips,
    text,
)
from edgebench.controller.report import DeviceSection, FleetTable, Report, RollupTable

SUSPECT_MARK = "⚠"
SUSPECT_MEANING = f"{SUSPECT_MARK} suspect: the validity record found something that may have disturbed the " \
                  "measurement (see the Validity section)"


def rate_value(cell: Cell | None, *, config: bool = False, ratio: bool = False, highlight: bool = False) -> Value:
    """A throughput cell: ``img/s ± CI``, optionally its configuration and its ratio to the baseline."""
    if cell is None:
        return Value()
    if not cell.ok:
        label = f.outcome_text(cell)
        long = "Out of memory" if cell.outcome == "OOM" else label
        return Value(text=label, style="bad", title=f"{long}: {cell.reason}" if cell.reason else long,
                     extra=f"({f.config_text(cell)})" if config else "")
    extra = []
    if cell.ci95 is not None:
        extra.append(f"± {f.fmt_sd(cell.ci95)}")
    if config:
        extra.append(f"({f.config_text(cell)})")
    if ratio and cell.ratio is not None:
        extra.append(f"({f.fmt_ratio(cell.ratio)})")
    title = ""
    if cell.suspect:
        extra.append(SUSPECT_MARK)
        title = "suspect: " + "; ".join(cell.validity_reasons)
    style: Style = "win" if highlight else "warn" if cell.suspect else ""
    return Value(text=f.fmt_rate(cell.img_per_s), raw=cell.img_per_s, extra=" ".join(extra), style=style,
                 title=title)


def _col(key: str, header: str, numeric: bool = False, unit: str = "") -> Column:
    return Column(key, header, numeric, unit)


def cell_value(col: f.Column, cell: Cell) -> Value:
    """One cell of a details or CSV table: the shared column definition's text and raw value."""
    if col.key == "flags":
        return chips(list(cell.flags), f.FLAG_MEANINGS)
    shown = col.text(cell)
    raw = f.csv_value(col, cell)
    style: Style = "bad" if col.key == "img_per_s" and not cell.ok else "na" if shown == f.NA else ""
    title = ""
    if col.key == "verdict" and cell.suspect:
        style, title = "warn", "; ".join(cell.validity_reasons)
    return Value(text=shown, raw=raw if raw != "" else None, style=style, title=title)


# --- sections ------------------------------------------------------------------------


def machines_section(report: Report) -> Section:
    headers = ["device", "tags", "host", "OS", "CPU", "cores", "RAM", "GPU", "driver / CUDA", "Python", "agent"]
    rows = []
    for d in report.devices.values():
        rows.append(tuple(text(v) for v in (d.device_id, ", ".join(d.tags), d.host, d.os, d.cpu, d.cores,
                                             f.fmt_bytes(d.ram_bytes), d.gpus, d.driver.replace("driver ", "") or f.NA,
                                             d.python, d.agent_version)))
    machines = Table("machines", "Machines", tuple(_col(h.lower().replace(" ", "_"), h) for h in headers),
                     tuple(rows), lead="Fingerprints recorded with the results (the newest per device).",
                     compact=("device", "cpu", "cores", "ram", "gpu"))
    backends = report.backends
    lib_rows = []
    for d in report.devices.values():
        lib_rows.append((text(d.device_id), *[
            text(", ".join(f"{k} {v}" for k, v in sorted(d.libraries.get(b, {}).items()))) for b in backends]))
    libraries = Table("libraries", "Library versions per backend",
                      (_col("device", "device"), *[_col(b, b) for b in backends]), tuple(lib_rows))
    return Section("machines", "Machines", blocks=(machines, libraries))


def fleet_table(t: FleetTable) -> Table:
    rows = []
    for device in t.devices:
        ranking = t.ranking(device)
        win = ranking.winner
        values = [text(device)]
        for b in t.backends:
            c = t.cells.get((device, b))
            values.append(rate_value(c, config=True, highlight=c is not None and c is win))
        values.append(text(ranking.text(), style="" if win is not None or len(ranking.order) < 2 else "muted"))
        rows.append(tuple(values))
    title = f.section_title(t.workload, t.mode)
    chart = None
    if t.chart_config is not None and len(t.devices) > 1:
        bs, precision, gpus = t.chart_config
        config = f"bs {bs}, {precision}" + (f", {gpus} GPUs" if gpus > 1 else "")
        missing = ", ".join(f"{d}/{b}" for d, b in t.chart_missing)
        chart = Chart("fleet", t, f"{t.workload}: img/s per device and backend, all at {config} (log scale; "
                                  "whiskers: 95 % interval)." + (f" Not run at {config}: {missing}." if missing
                                                                 else ""))
    return Table(f"fleet-{_slug(title)}", title,
                 (_col("device", "device"), *[_col(b, b, numeric=True, unit="img/s") for b in t.backends],
                  _col("fastest", "fastest")),
                 tuple(rows), notes=tuple(t.notes), chart=chart)


def fleet_section(report: Report) -> Section | None:
    fleets = [t for t in report.fleet_tables() if len(t.devices) > 1]
    if not fleets:
        return None
    return Section("fleet", "Fleet view",
                   lead="img/s ± 95 % interval of each backend on each device at its fastest configuration "
                        "(configuration in brackets); highlighted: the fastest backend on the device, where its "
                        "interval clears the runner-up's. Overlapping intervals read \"within noise\". Each "
                        "chart compares every bar at one stated configuration.",
                   blocks=tuple(fleet_table(t) for t in fleets))


def rollup_section(report: Report) -> Section | None:
    roll: RollupTable | None = report.rollup()
    if roll is None:
        return None
    rows = []
    for d in roll.devices:
        values = [text(d)]
        for b in roll.backends:
            got = roll.values.get((d, b))
            values.append(Value(f.fmt_ratio(got[0]), raw=got[0], extra=f"({got[1]} configs)") if got else Value())
        rows.append(tuple(values))
    table = Table("rollup", f"Geometric mean of the ratio to {roll.baseline}, across workloads",
                  (_col("device", "device"), *[_col(b, b, numeric=True, unit="ratio") for b in roll.backends]),
                  tuple(rows),
                  lead=f"Per device: each backend's speed ratio to {roll.baseline} on every configuration both "
                       "ran, combined by the geometric mean (a ratio of 2 and one of 0.5 average to 1).")
    return Section("rollup", "Roll-up per device", blocks=(table,))


def energy_section(report: Report) -> Section | None:
    tables = []
    for t in report.fleet_tables():
        cells = [c for c in t.cells.values() if c.ok and c.img_per_j is not None]
        if not cells:
            continue
        unit = f.per_j_unit(t.mode)
        devices = sorted({c.device_id for c in cells})
        backends = [b for b in t.backends if any(c.backend == b for c in cells)]
        rows = []
        for d in devices:
            row = [text(d)]
            for b in backends:
                c = t.cells.get((d, b))
                if c is None or c.img_per_j is None:
                    row.append(Value(f.NA if c is not None and c.cpu_only else "", style="na"))
                    continue
                row.append(Value(f.fmt_per_j(c.img_per_j), raw=c.img_per_j,
                                 extra=f"({f.config_text(c)}, {f.fmt_num(c.power_w)} W)"))
            rows.append(tuple(row))
        title = f.section_title(t.workload, t.mode)
        tables.append(Table(f"energy-{_slug(title)}", title,
                            (_col("device", "device"), *[_col(b, b, numeric=True, unit=unit) for b in backends]),
                            tuple(rows), chart=Chart("energy", t, f"{t.workload}: {unit} per device and backend "
                                                                  "(each at its fastest configuration, named under "
                                                                  "the bar); GPU energy only.")))
    if not tables:
        return None
    return Section("energy", "Energy efficiency",
                   lead="Images (inferences for inference jobs) per joule of GPU energy over the measured windows: "
                        "NVML's energy counter where the GPU has one, else the integral of board power. CPU-only "
                        "results have no energy reading (n/a).", blocks=tuple(tables))


def device_section(report: Report, section: DeviceSection) -> Section:
    d = section.device
    rows = []
    for r in section.pivot:
        win = r.ranking.winner if len(r.ranking.order) > 1 else None
        values = [text(f.section_title(r.workload, r.mode)), text(f.pivot_label(r))]
        for b in section.backends:
            c = r.cells.get(b)
            values.append(rate_value(c, ratio=b != report.baseline, highlight=c is not None and c is win))
        rows.append(tuple(values))
    cpu_only = all(c.cpu_only for c in section.cells)
    pivot = Table(f"pivot-{_slug(d.device_id)}", f"{d.device_id} · img/s per backend and batch size",
                  (_col("workload", "workload"), _col("config", "config"),
                   *[_col(b, b + (" (baseline)" if b == report.baseline else ""), numeric=True, unit="img/s")
                     for b in section.backends]),
                  tuple(rows),
                  lead=f"± 95 % interval; in brackets the speed ratio to {report.baseline}. Highlighted: the "
                       "fastest backend of a row where its interval clears the runner-up's.",
                  chart=Chart("figure4", section,
                              "Speed and utilisation per backend and workload (the 2019 study's Figure 4). "
                              + ("CPU-only device: GPU utilisation does not apply." if cpu_only else
                                 "GPU utilisation is the fraction of time any kernel ran; read it beside SM clock "
                                 "and power below.")))
    blocks: list[Table | Chart | Notes] = [pivot]
    if _has_batch_chart(section):
        blocks.append(Chart("batch", section, "img/s against batch size (log-log); a red × marks a batch size that "
                                              "ran out of memory."))
    columns = f.detail_columns(section.cells)
    detail = Table(f"details-{_slug(d.device_id)}", f"{d.device_id} · details (× baseline = × {report.baseline})",
                   tuple(_col(c.key, c.header, c.numeric) for c in columns),
                   tuple(tuple(cell_value(col, c) for col in columns) for c in section.cells),
                   compact=("workload", "backend", "batch_size", "gpus", "img_per_s", "img_per_s_ci95", "ratio",
                            "flags", *(("cpu_pct",) if cpu_only else ("gpu_util_pct", "power_w",
                                                                      "energy_j_per_img"))))
    blocks.append(detail)
    meta = (f"{d.gpus if d.has_gpu else 'CPU only'} · {d.cpu} ({d.cores}) · {f.fmt_bytes(d.ram_bytes)} RAM · "
            f"{d.os}; Python {d.python}" + (f" · {d.driver}" if d.driver else ""))
    return Section(f"device-{_slug(d.device_id)}", d.device_id, meta=meta, tags=d.tags, blocks=tuple(blocks))


def _has_batch_chart(section: DeviceSection) -> bool:
    panels: dict[tuple[str, str, str, int], set[int]] = {}
    for c in section.cells:
        panels.setdefault((c.workload, c.mode, c.precision, c.gpus), set()).add(c.batch_size)
    return any(len(v) >= 2 for v in panels.values())


def scaling_section(report: Report) -> Section | None:
    tables = report.scaling_tables()
    if not tables:
        return None
    out = []
    for sc in tables:
        rows = tuple((text(r.gpus), rate_value(r.cell), Value(f.fmt_ratio(r.speedup), raw=r.speedup),
                      Value(f.MISSING if r.efficiency_pct is None else f"{r.efficiency_pct:.0f}",
                            raw=r.efficiency_pct)) for r in sc.rows)
        title = (f"{sc.device_id} · {f.section_title(sc.workload, sc.mode)} · {sc.backend} · bs {sc.batch_size} "
                 f"per GPU · {sc.precision}")
        out.append(Table(f"scaling-{_slug(title)}", title,
                         (_col("gpus", "GPUs", True), _col("img_per_s", "img/s", True, "img/s"),
                          _col("speedup", "speedup", True), _col("efficiency_pct", "efficiency %", True)),
                         rows, chart=Chart("scaling", sc, "measured img/s against linear scaling from the base")))
    return Section("scaling", "Scaling",
                   lead="speedup = img/s(N) / img/s(base); efficiency = 100 % × img/s(N) / (N / base × "
                        "img/s(base)), base = the smallest GPU count measured (with base 1: img/s(N) / "
                        "(N × img/s(1))). The batch size is per GPU: weak scaling.", blocks=tuple(out))


def validity_section(report: Report) -> Section | None:
    ok = [c for c in report.cells if c.ok]
    recorded = [c for c in ok if c.verdict is not None]
    if not recorded:
        return None
    suspect = [c for c in recorded if c.suspect]
    rows = []
    for c in [*suspect, *[c for c in recorded if not c.suspect and c.validity_notes]]:
        rows.append((text(c.device_id), text(f.cell_label(c)), text(c.backend), text(f.config_text(c)),
                     text(c.verdict, style="warn" if c.suspect else ""),
                     text("; ".join(c.validity_reasons) or "-"), text("; ".join(c.validity_notes) or "-")))
    lead = (f"{len(suspect)} of {len(recorded)} results with a validity record are suspect"
            + (f"; {len(ok) - len(recorded)} results predate the record" if len(ok) > len(recorded) else "")
            + ". Checked inside each measured window: GPU clock-event reasons, power-limit changes, other "
              "processes on the GPU, GPU settings, the host's load from other processes, CPU governor and "
              "throttling (docs/TELEMETRY.md).")
    blocks: tuple[Table, ...] = ()
    if rows:
        blocks = (Table("validity", "Suspect results and notes",
                        (_col("device", "device"), _col("workload", "workload"), _col("backend", "backend"),
                         _col("config", "config"), _col("verdict", "verdict"), _col("reasons", "reasons"),
                         _col("notes", "notes")), tuple(rows)),)
    return Section("validity", "Validity", lead=lead, blocks=blocks)


def timeseries_section(report: Report, job_id: str | None) -> Section | None:
    cell = report.timeseries_job(job_id)
    if cell is None:
        if job_id:
            return Section("timeseries", "Time series", lead=f"No job {job_id} (or no unique match) in this "
                                                              "selection.")
        return None
    ts = report.timeseries.get((cell.device_id, cell.job_id))
    what = (f"job {cell.job_id} on {cell.device_id}: {cell.backend}, {f.cell_label(cell)}, bs {cell.batch_size}, "
            f"{cell.precision}")
    if ts is None:
        return Section("timeseries", "Time series", lead=f"{what}: no time series was stored with this result.")
    facts = []
    if cell.ok:
        facts.append(f"{f.fmt_rate(cell.img_per_s, cell.ci95)} img/s")
    if not cell.cpu_only:
        facts += [f"GPU util {f.fmt_num(cell.gpu_util_pct)} %", f"SM {f.fmt_num(cell.sm_clock_mhz)} MHz",
                  f"{f.fmt_num(cell.power_w)} W", f"{f.fmt_mj(cell.energy_j_per_img)} mJ/img",
                  f"peak GPU memory {f.fmt_bytes(cell.peak_mem_bytes)}"]
        if cell.mem_policy:
            facts.append(f"memory policy: {cell.mem_policy}")
    else:
        facts.append(f"CPU {f.fmt_num(cell.cpu_pct)} % of one core")
    return Section("timeseries", "Time series",
                   lead=f"{what}. Inside the measured window: {' · '.join(facts)}. Choose another job with --job.",
                   blocks=(Chart("timeseries", (cell, ts), "Zoomed to the measured windows (shaded), which the "
                                                           "tables summarise."),))


def notes_section(report: Report) -> Section | None:
    used = sorted({flag for c in report.cells for flag in c.flags})
    items: list[tuple[str, str]] = [(flag, f.FLAG_MEANINGS.get(flag, "")) for flag in used]
    if any(c.suspect for c in report.cells if c.ok):
        items.append(("", SUSPECT_MEANING))
    if any(f.preallocates(c) and not c.cpu_only for c in report.cells):
        items.append(("", f.PREALLOC_MEANING))
    items += [("note", n) for n in report.notes]
    if not items:
        return None
    return Section("notes", "Flags and notes", blocks=(Notes("Flags and notes", tuple(items)),))


def report_document(report: Report, job_id: str | None = None, title: str = "edgebench report") -> Document:
    facts = tuple(f.header_facts(report))
    subtitle = " · ".join(f"{d.device_id}: {d.gpus if d.has_gpu else 'CPU only'}" for d in report.devices.values())
    footer = ("img/s is images over the measured window (warm-up, build, compile and validation excluded) of the "
              "median repeat; ± is the half-width of its 95 % confidence interval, over the repeats, else over "
              "the run's batch blocks. Energy per image divides the GPU energy of all measured windows by the "
              "images they processed.")
    if not report.cells and not report.inference:
        return Document(title, subtitle or "no devices", facts, empty="No results match the selection.",
                        footer=footer)
    sections = [machines_section(report), fleet_section(report), rollup_section(report), energy_section(report),
                inference_section(report.inference),
                *[device_section(report, s) for s in report.device_sections()], scaling_section(report),
                validity_section(report), timeseries_section(report, job_id), notes_section(report)]
    callout = (f"{report.utilisation_meaning} n/a marks metrics that do not apply (CPU-only results); – marks "
               "metrics a device did not report.")
    return Document(title, subtitle, facts, callout=callout, sections=tuple(s for s in sections if s is not None),
                    footer=footer)


def cells_table(report: Report) -> Table:
    """One row per cell, every column, raw values (the CSV)."""
    return Table("cells", "cells", tuple(_col(c.key, c.header, c.numeric) for c in f.CSV_COLUMNS),
                 tuple(tuple(cell_value(col, c) for col in f.CSV_COLUMNS) for c in report.cells))


def _slug(value: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in value.lower()).strip("-")
