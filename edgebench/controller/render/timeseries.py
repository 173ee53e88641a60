"""The time-series chart of one cell for the HTML report: utilisation, power and memory over the run, the
measured windows shaded (the other charts are controller/render/charts.py)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from edgebench.controller.render import charts as c
from edgebench.controller.report import Cell
from edgebench.schemas.telemetry import TimeSeries

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _shade_windows(ax: Axes, ts: TimeSeries, label: bool) -> None:
    for i, (b, e) in enumerate(ts.windows or ([ts.window] if ts.window else [])):
        ax.axvspan(b, e, color=c.WINDOW, zorder=0, label="measured window" if label and i == 0 else None)


def _series(ts: TimeSeries, name: str) -> tuple[list[float], list[float]] | None:
    col = ts.columns.get(name)
    if col is None:
        return None
    times: list[float] = []
    values: list[float] = []
    for t, v in zip(ts.t_s, col):
        if v is not None:
            times.append(t)
            values.append(v)
    return (times, values) if times else None


def timeseries_chart(cell: Cell, ts: TimeSeries) -> str:
    """Utilisation, memory and power over the whole job, measured windows shaded."""
    gpu_cols = sorted({m.group(1) for name in ts.columns if (m := re.match(r"gpu(\d+)_", name))}, key=int)
    with c._style(f"ts-{cell.job_id}"):
        fig = c._figure(12.0, 6.0)
        axes = fig.subplots(3, 1, sharex=True)
        for k, ax in enumerate(axes):
            _shade_windows(ax, ts, label=k == 0)
        util_ax, mem_ax, power_ax = axes
        if gpu_cols:
            for i in gpu_cols:
                for name, label, style in ((f"gpu{i}_util_pct", f"GPU{i} utilisation %", "-"),
                                           (f"gpu{i}_mem_util_pct", f"GPU{i} memory-controller busy %", ":")):
                    s = _series(ts, name)
                    if s:
                        util_ax.plot(*s, style, color="#4C78A8", linewidth=1.2, label=label)
            util_ax.set_ylim(0, 105)
            util_ax.set_title("GPU utilisation (fraction of time any kernel ran) and SM clock")
            clock = util_ax.twinx()
            for i in gpu_cols:
                s = _series(ts, f"gpu{i}_sm_clock_mhz")
                if s:
                    clock.plot(*s, "--", color="#F58518", linewidth=1.0, label=f"GPU{i} SM clock MHz")
            clock.set_ylabel("SM MHz", color="#F58518")
            clock.grid(False)
            clock.spines["right"].set_visible(True)
            _merge_legends(util_ax, clock)
        else:
            s = _series(ts, "cpu_pct")
            if s:
                util_ax.plot(*s, color="#B279A2", linewidth=1.2, label="runner CPU % of one core")
            util_ax.set_title("CPU use of the runner's process tree (no GPU on this device)")
            util_ax.legend(**_OUTSIDE)
        util_ax.set_ylabel("%")

        for i in gpu_cols:
            for name, label, style in ((f"gpu{i}_mem_used_mib", f"GPU{i} memory used (device)", "-"),
                                       (f"gpu{i}_process_mem_mib", f"GPU{i} memory (runner)", "--")):
                s = _series(ts, name)
                if s:
                    mem_ax.plot(s[0], [v / 1024 for v in s[1]], style, color="#54A24B", linewidth=1.2, label=label)
        s = _series(ts, "rss_mib")
        if s:
            mem_ax.plot(s[0], [v / 1024 for v in s[1]], color="#9D755D", linewidth=1.2, label="host RSS (runner)")
        mem_ax.set_ylabel("GiB")
        mem_ax.set_title("Memory")
        mem_ax.legend(**_OUTSIDE)

        plotted = False
        for i in gpu_cols:
            s = _series(ts, f"gpu{i}_power_w")
            if s:
                power_ax.plot(*s, color="#E45756", linewidth=1.2, label=f"GPU{i} board power W")
                plotted = True
        if plotted:
            power_ax.set_ylabel("W")
            power_ax.set_title("Power")
            power_ax.legend(**_OUTSIDE)
        else:
            power_ax.set_title("Power: not reported by this device")
            power_ax.set_yticks([])
        span = _zoom(ts)
        if span is not None:
            power_ax.set_xlim(*span)  # shared x: every panel zooms
        power_ax.set_xlabel("seconds since the job's first sample (zoomed to the measured windows, shaded; "
                            f"the job ran {ts.t_s[-1] if ts.t_s else 0:.0f} s)")
        return c.to_svg(fig, f"time series of job {cell.job_id}")


def _zoom(ts: TimeSeries) -> tuple[float, float] | None:
    """The measured windows plus 5 % of their span on each side (at least one sample interval)."""
    spans = ts.windows or ([ts.window] if ts.window else [])
    if not spans:
        return None
    lo, hi = min(b for b, _ in spans), max(e for _, e in spans)
    step = (ts.t_s[-1] - ts.t_s[0]) / max(len(ts.t_s) - 1, 1) if len(ts.t_s) > 1 else 0.1
    margin = max(0.05 * (hi - lo), step)
    return lo - margin, hi + margin


_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.06, 1.0), "borderaxespad": 0.0}


def _merge_legends(a: Axes, b: Axes) -> None:
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = b.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, **_OUTSIDE)
