"""Charts of comparisons (a forest plot of ratios) and histories (each cell's runs over time)."""

from __future__ import annotations

import math
from typing import Any

from edgebench.controller.render import charts as c
from edgebench.controller.render import format as f

MAX_FOREST_ROWS = 60
MAX_LINES = 10
VERDICT_COLOURS = {"slower": "#cf222e", "faster": "#1a7f37", "no change": c.MUTED, "too few samples": "#afb8c1"}


def compare_chart(cells: list[Any]) -> str | None:
    """candidate / baseline per cell with its 95 % interval, on a log axis centred on 1."""
    rows = [x for x in cells if x.estimate is not None][:MAX_FOREST_ROWS]
    if not rows:
        return None
    with c._style("compare"):
        fig = c._figure(9.0, 0.9 + 0.26 * len(rows))
        ax = fig.subplots()
        lows, highs = [], []
        for i, cell in enumerate(rows):
            est = cell.estimate
            y = len(rows) - 1 - i
            colour = VERDICT_COLOURS.get(cell.verdict, c.MUTED)
            if est.low is not None and est.high is not None:
                ax.plot([est.low, est.high], [y, y], color=colour, linewidth=1.6, solid_capstyle="butt")
                lows.append(est.low)
                highs.append(est.high)
            ax.plot([est.ratio], [y], marker="o", color=colour, markersize=4.5)
            lows.append(est.ratio)
            highs.append(est.ratio)
        ax.axvline(1.0, color=c.INK, linewidth=0.8)
        ax.set_xscale("log")
        lo, hi = min(lows), max(highs)
        span = max(abs(math.log10(lo)), abs(math.log10(hi)), math.log10(1.05))
        ax.set_xlim(10 ** (-span * 1.15), 10 ** (span * 1.15))
        from matplotlib.ticker import FuncFormatter

        def minor(v: float, _p: object) -> str:
            lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
            return f"{v:.2g}×" if lead in (2, 5) else ""

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2g}×"))
        ax.xaxis.set_minor_formatter(FuncFormatter(minor))
        ax.set_yticks(range(len(rows)), [x.key.label().replace(" · ", "  ") for x in reversed(rows)], fontsize=7.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("candidate / baseline (log scale; right of 1: faster)")
        ax.set_title("Ratio per cell, 95 % interval")
        return c.to_svg(fig, "ratio per cell")


def history_chart(data: tuple[Any, str, str, list[Any]]) -> str | None:
    """One device group and workload: each cell's runs over time, suspect runs hollow, shifts dashed."""
    group, workload, mode, series = data
    series = sorted(series, key=lambda s: (-len(s.shifts), -len(s.runs), s.key))[:MAX_LINES]
    dated = [s for s in series if all(r.finished_at is not None for r in s.runs)]
    if not dated:
        return None
    backends = sorted({s.key.backend for s in dated})
    palette = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
               "#FF9DA6", "#79706E"]
    with c._style(f"history-{group.label()}-{workload}-{mode}"):
        fig = c._figure(12.0, 3.4)
        ax = fig.subplots()
        values = []
        for i, s in enumerate(dated):
            colour = c.BACKEND_COLOURS.get(s.key.backend) if len(dated) == len(backends) else palette[i % 10]
            colour = colour or palette[i % 10]
            xs = [r.finished_at for r in s.runs]
            ys = [r.img_per_s for r in s.runs]
            values += ys
            label = f"{s.key.backend} · {s.key.config_label()}"
            ax.plot(xs, ys, color=colour, linewidth=1.1, label=label)
            ok = [(x, y) for x, y, r in zip(xs, ys, s.runs) if r.verdict != "suspect"]
            bad = [(x, y) for x, y, r in zip(xs, ys, s.runs) if r.verdict == "suspect"]
            if ok:
                ax.plot(*zip(*ok), linestyle="none", marker="o", markersize=3.5, color=colour)
            if bad:
                ax.plot(*zip(*bad), linestyle="none", marker="o", markersize=4.5, markerfacecolor="white",
                        color=colour)
            for sh in s.shifts:
                ax.axvline(sh.first.finished_at, color=colour, linestyle="--", linewidth=0.9)
                ax.annotate(f"{100 * (sh.ratio - 1):+.0f} %", (sh.first.finished_at, sh.first.img_per_s),
                            xytext=(4, 6), textcoords="offset points", fontsize=7.5, color=colour,
                            fontweight="bold")
        if values and max(values) / max(min(values), 1e-9) > 10:
            ax.set_yscale("log")
            c._plain_log_ticks(ax)
        elif values:
            ax.set_ylim(0, max(values) * 1.15)
        ax.set_ylabel("img/s")
        ax.set_title(f"{f.section_title(workload, mode)} · {group.label()}")
        fig.autofmt_xdate()
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=7.5)
        return c.to_svg(fig, f"history of {workload} on {group.label()}")
