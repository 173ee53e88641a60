"""Charts for the HTML report: matplotlib figures rendered to inline SVG.

No pyplot (no global state, no GUI backend): each chart is a
``matplotlib.figure.Figure`` saved to an SVG string. Text stays text
(``svg.fonttype: none``), so the page can be searched and the browser draws it
with the page's own fonts; the output is deterministic (fixed hash salt, no
date) so that committed example reports diff cleanly.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib  # the `report` extra; imported here so that a missing install fails early

from edgebench.controller.render import format as f
from edgebench.controller.report import Cell, DeviceSection, FleetTable, ScalingTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BACKEND_COLOURS = {
    "torch": "#E45756",
    "keras-jax": "#4C78A8",
    "keras-torch": "#B279A2",
    "keras-tensorflow": "#F58518",
    "keras-tensorflow1": "#9D755D",
    "keras-mxnet": "#54A24B",
    "sleep": "#BAB0AC",
}
_FALLBACK = ["#72B7B2", "#EECA3B", "#FF9DA6", "#79706E"]
INK = "#1f2328"
MUTED = "#656d76"
GRID = "#d8dee4"
WINDOW = "#fff4ce"  # measured-window shading

_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: the layout never depends on installed fonts
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    # labels are data (device ids, library versions): never parse "$...$" as mathtext
    "text.parse_math": False,
}


def colour(backend: str, order: Sequence[str] = ()) -> str:
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    unknown = [b for b in order if b not in BACKEND_COLOURS]
    return _FALLBACK[(unknown.index(backend) if backend in unknown else 0) % len(_FALLBACK)]


@contextmanager
def _style(salt: str) -> Iterator[None]:
    rc: Any = {**_STYLE, "svg.hashsalt": salt}
    with matplotlib.rc_context(rc):
        yield


def _width(width_in: float) -> float:
    """Between 6 in and the page's content width (12 in = 1,152 px)."""
    return max(6.0, min(12.0, width_in))


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def to_svg(fig: Figure, title: str) -> str:
    """The figure as an inline ``<svg>`` element that scales with its container."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Title": title})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE
    m = re.search(r'<svg([^>]*?) width="([\d.]+)pt" height="[^"]*"', svg)
    if m is None:
        return svg
    width_px = float(m.group(2)) * 4 / 3  # shown at its natural size at most: text stays ~12 px
    return (svg[:m.start()] + f'<svg{m.group(1)} role="img" aria-label="{_attr(title)}" class="chart" '
            f'style="max-width:{width_px:.0f}px"' + svg[m.end():])


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _rate_label(value: float) -> str:
    if value >= 10000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.0f}k" if value % 1000 == 0 else f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _plain_log_ticks(ax: Axes) -> None:
    """Label a log axis with plain numbers (1.2k, 300), minor ticks too when it spans little."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_ylim()
    few_decades = hi / max(lo, 1e-9) < 300

    def minor(v: float, _pos: object) -> str:
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return _rate_label(v) if few_decades and lead in (2, 5) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _rate_label(v)))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _log_limits(values: list[float], rotated: bool = False) -> tuple[float, float]:
    """Room above the highest whisker for its label (more when labels stand on end)."""
    lo = min(values) if values else 1.0
    hi = max(values) if values else 10.0
    head = 0.75 if rotated else 0.45
    return 10 ** math.floor(math.log10(max(lo, 1e-3)) - 0.15), 10 ** (math.log10(max(hi, 1e-3)) + head)


def _grouped_bars(ax: Axes, groups: list[str], series: list[str], value: Any, *, log: bool, label_fmt: Any,
                  err: Any = None, na_text: str = "n/a", fail: Any = None) -> None:
    """Bars of ``value(group_index, series_name)`` (None = no bar); ``fail`` gives text for failed cells."""
    n = max(len(series), 1)
    width = 0.8 / n
    values: list[float] = []
    for j, s in enumerate(series):
        for i in range(len(groups)):
            x = i - 0.4 + width * (j + 0.5)
            v = value(i, s)
            failed = fail(i, s) if fail else None
            if failed:
                ax.text(x, 0.02, failed, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                        rotation=90, fontsize=8, color="#cf222e", fontweight="bold")
                continue
            if v is None:
                if na_text:
                    ax.text(x, 0.02, na_text, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                            rotation=90, fontsize=7.5, color=MUTED)
                continue
            values.append(v)
            e = err(i, s) if err else None
            ax.bar(x, v, width * 0.92, color=colour(s, series), label=s if i == 0 else None,
                   yerr=e if e else None, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": INK})
            # the label sits above the whisker's cap, never on it
            top = v + (e or 0.0)
            values.append(top)
            ax.annotate(label_fmt(v), (x, top), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, color=INK, rotation=90 if n > 3 else 0)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="x", visible=False)
    if log:
        ax.set_yscale("log")
        if values:
            ax.set_ylim(*_log_limits(values, rotated=n > 3))
        _plain_log_ticks(ax)
    elif values:
        ax.set_ylim(0, max(values) * (1.45 if n > 3 else 1.25))


def _legend(fig: Figure, series: list[str]) -> None:
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=colour(s, series), label=s) for s in series], loc="outside upper right",
               ncols=len(series))


def figure4(section: DeviceSection) -> str:
    """The 2019 study's Figure 4 for one device: img/s and GPU utilisation per backend and workload.

    On a CPU-only device the right panel shows the runner's CPU use instead,
    labelled as such: GPU utilisation does not apply there.
    """
    rows = section.pivot
    groups = [f"{f.short_workload(r.workload, r.mode)}\n{f.chart_config_label(r)}" for r in rows]
    backends = section.backends
    cpu_only = all(c.cpu_only for c in section.cells)

    def cell(i: int, b: str) -> Cell | None:
        return rows[i].cells.get(b)

    def rate(i: int, b: str) -> float | None:
        c = cell(i, b)
        return c.img_per_s if c is not None and c.ok else None

    def sd(i: int, b: str) -> float | None:
        c = cell(i, b)
        if c is None or not c.ok or c.ci95 is None or c.img_per_s is None:
            return None
        return min(c.ci95, c.img_per_s * 0.999)  # a log axis cannot draw below zero

    def failed(i: int, b: str) -> str | None:
        c = cell(i, b)
        return f.outcome_text(c) if c is not None and not c.ok else None

    def util(i: int, b: str) -> float | None:
        c = cell(i, b)
        if c is None or not c.ok:
            return None
        return c.cpu_pct if cpu_only else (None if c.cpu_only else c.gpu_util_pct)

    with _style(f"fig4-{section.device.device_id}"):
        fig = _figure(_width(1.5 + 2 * len(groups) * max(1.3, 0.35 * len(backends))), 3.4)
        left, right = fig.subplots(1, 2)
        _grouped_bars(left, groups, backends, rate, log=True, label_fmt=_rate_label, err=sd, na_text="",
                      fail=failed)
        left.set_title("Speed: img/s (log scale, ± 95 % interval)")
        _grouped_bars(right, groups, backends, util, log=False, label_fmt=lambda v: f"{v:.0f}", fail=failed,
                      na_text="n/a" if not cpu_only else "")
        if cpu_only:
            right.set_title("CPU use (runner, % of one core)")
        else:
            right.set_title("GPU utilisation % (time a kernel ran)")
            right.set_ylim(0, 110)
        _legend(fig, backends)
        return to_svg(fig, f"{section.device.device_id}: img/s and utilisation per backend and workload")


def config_title(config: tuple[int, str, int] | None) -> str:
    if config is None:
        return ""
    bs, precision, gpus = config
    return f"bs {bs}, {precision}" + (f", {gpus} GPUs" if gpus > 1 else "")


def fleet_chart(table: FleetTable) -> str:
    """Devices x backends for one workload, every bar at the table's one chart configuration."""
    devices = [d for d in table.devices if any(k[0] == d for k in table.chart_cells)]

    def cell(i: int, b: str) -> Cell | None:
        return table.chart_cells.get((devices[i], b))

    def rate(i: int, b: str) -> float | None:
        c = cell(i, b)
        return c.img_per_s if c is not None and c.ok else None

    def ci(i: int, b: str) -> float | None:
        c = cell(i, b)
        if c is None or not c.ok or c.ci95 is None or c.img_per_s is None:
            return None
        return min(c.ci95, c.img_per_s * 0.999)

    with _style(f"fleet-{table.workload}-{table.mode}"):
        fig = _figure(_width(3.0 + 0.45 * len(devices) * max(2, len(table.backends))), 3.2)
        ax = fig.subplots()
        _grouped_bars(ax, devices, table.backends, rate, log=True, label_fmt=_rate_label, err=ci, na_text="")
        ax.set_title(f"{f.section_title(table.workload, table.mode)}: img/s at {config_title(table.chart_config)} "
                     "(log scale, ± 95 % interval)")
        _legend(fig, table.backends)
        return to_svg(fig, f"fleet view, {table.workload}, at {config_title(table.chart_config)}")


def energy_chart(table: FleetTable) -> str | None:
    """img/J (inferences/J) per device and backend, each at its fastest configuration, named on the bar."""
    cells = {k: c for k, c in table.cells.items() if c.ok and c.img_per_j is not None}
    if not cells:
        return None
    devices = [d for d in table.devices if any(k[0] == d for k in cells)]
    backends = [b for b in table.backends if any(k[1] == b for k in cells)]
    unit = f.per_j_unit(table.mode)

    def value(i: int, b: str) -> float | None:
        c = cells.get((devices[i], b))
        return c.img_per_j if c is not None else None

    def label(c: Cell) -> str:
        return f"{_rate_label(c.img_per_j or 0.0)}\n{f.config_text(c)}"

    with _style(f"energy-{table.workload}-{table.mode}"):
        fig = _figure(_width(3.0 + 0.55 * len(devices) * max(2, len(backends))), 3.2)
        ax = fig.subplots()
        n = max(len(backends), 1)
        width = 0.8 / n
        tops = []
        for j, b in enumerate(backends):
            for i in range(len(devices)):
                c = cells.get((devices[i], b))
                if c is None or c.img_per_j is None:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(x, c.img_per_j, width * 0.92, color=colour(b, backends))
                ax.annotate(label(c), (x, c.img_per_j), xytext=(0, 3), textcoords="offset points", ha="center",
                            va="bottom", fontsize=6.5, color=INK)
                tops.append(c.img_per_j)
        ax.set_xticks(range(len(devices)), devices)
        ax.set_xlim(-0.6, len(devices) - 0.4)
        ax.grid(axis="x", visible=False)
        ax.set_ylim(0, max(tops) * 1.35)
        ax.set_ylabel(unit)
        ax.set_title(f"{f.section_title(table.workload, table.mode)}: {unit}, GPU energy\n"
                     "(each bar at its fastest configuration, named on it)")
        _legend(fig, backends)
        return to_svg(fig, f"energy efficiency, {table.workload}")


def batch_chart(section: DeviceSection) -> str | None:
    """img/s against batch size, one panel per workload that ran at two or more batch sizes."""
    panels: dict[tuple[str, str, str, int], list[Cell]] = {}
    for c in section.cells:
        panels.setdefault((c.workload, c.mode, c.precision, c.gpus), []).append(c)
    panels = {k: v for k, v in panels.items() if len({c.batch_size for c in v}) >= 2}
    if not panels:
        return None
    with _style(f"batch-{section.device.device_id}"):
        fig = _figure(_width(3.6 * len(panels) + 1.2), 3.0)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, ((workload, mode, precision, gpus), cells) in zip(axes, panels.items()):
            batches = sorted({c.batch_size for c in cells})
            for b in section.backends:
                mine = sorted((c for c in cells if c.backend == b), key=lambda c: c.batch_size)
                ok = [c for c in mine if c.ok]
                if ok:
                    ax.errorbar([c.batch_size for c in ok], [c.img_per_s for c in ok],
                                yerr=[min(c.ci95 or 0.0, (c.img_per_s or 0.0) * 0.999) for c in ok],
                                color=colour(b, section.backends), marker="o", markersize=4, linewidth=1.6,
                                capsize=2, elinewidth=0.8, label=b)
                for c in mine:
                    if not c.ok:
                        ax.plot([c.batch_size], [1], marker="x", color="#cf222e", markersize=7,
                                transform=ax.get_xaxis_transform(), clip_on=False)
                        ax.annotate(f.outcome_text(c), (c.batch_size, 0.96), xycoords=("data", "axes fraction"),
                                    ha="center", va="top", fontsize=7.5, color="#cf222e", fontweight="bold")
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            ax.set_xlabel("batch size")
            extra = "" if precision == "fp32" and gpus <= 1 else f" ({precision}, {gpus} GPUs)"
            ax.set_title(f"{f.section_title(workload, mode)}{extra}")
        axes[0].set_ylabel("img/s (log)")
        _legend(fig, section.backends)
        return to_svg(fig, f"{section.device.device_id}: img/s against batch size")


def scaling_chart(table: ScalingTable) -> str:
    with _style(f"scaling-{table.device_id}-{table.workload}-{table.backend}-{table.batch_size}"):
        fig = _figure(4.8, 3.0)
        ax = fig.subplots()
        ok = [r for r in table.rows if r.cell.ok]
        xs = [r.gpus for r in ok]
        ax.plot(xs, [r.cell.img_per_s or 0.0 for r in ok], marker="o", color=colour(table.backend), label="measured")
        base = next((r for r in ok if r.gpus == table.base_gpus), None)
        if base is not None and base.cell.img_per_s:
            ax.plot(xs, [base.cell.img_per_s * x / table.base_gpus for x in xs], linestyle="--", color=MUTED,
                    label="linear")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("GPUs")
        ax.set_ylabel("img/s")
        ax.set_title(f"{table.backend} · {table.workload} · bs {table.batch_size}")
        ax.legend()
        return to_svg(fig, f"scaling of {table.backend} on {table.device_id}")
