"""The inference sections' charts (controller/render/inference_tables.py): latency CDFs and
Server throughput against latency, as inline SVG through the report's matplotlib style."""

from __future__ import annotations

from edgebench.controller.inference_report import InferenceRow, latency_cdf
from edgebench.controller.render import charts


def latency_cdf_chart(rows: list[InferenceRow]) -> str | None:
    """One step line per run: the fraction of queries at or under each latency LoadGen reports."""
    runs = [(r, latency_cdf(r)) for r in rows]
    runs = [(r, pts) for r, pts in runs if len(pts) >= 2]
    if not runs:
        return None
    runtimes = sorted({r.runtime for r, _ in runs})
    with charts._style("inference-latency-cdf"):
        fig = charts._figure(charts._width(7.5), 3.6)
        ax = fig.subplots()
        styles = ["-", "--", ":", "-."]
        for k, (r, pts) in enumerate(runs):
            ax.step([p for p, _ in pts], [f for _, f in pts], where="post", color=charts.colour(r.runtime, runtimes),
                    linestyle=styles[k % len(styles)], linewidth=1.4,
                    label=f"{r.device_id}: {r.label} ({r.workload}, {r.scenario})")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("latency per query (ms, log scale)")
        ax.set_ylabel("fraction of queries")
        ax.grid(True, which="both")
        ax.legend(loc="lower right", fontsize=7.5)
        return charts.to_svg(fig, "latency CDF per inference run")


def server_chart(curves: dict[tuple[str, str, str], list[tuple[float, float, bool]]]) -> str | None:
    if not curves:
        return None
    runtimes = sorted({rt for _, rt, _ in curves})
    with charts._style("inference-server"):
        fig = charts._figure(charts._width(7.0), 3.4)
        ax = fig.subplots()
        for (device, rt, prec), points in sorted(curves.items()):
            c = charts.colour(rt, runtimes)
            ax.plot([q for q, _, _ in points], [p for _, p, _ in points], color=c, linewidth=1.2,
                    label=f"{device}: {rt} · {prec}")
            for q, p99, ok in points:
                ax.scatter([q], [p99], s=28, color=c if ok else "none", edgecolors=c, zorder=3)
        ax.set_xlabel("scheduled queries/s")
        ax.set_ylabel("p99 latency (ms)")
        ax.grid(True)
        ax.legend(loc="upper left", fontsize=7.5)
        return charts.to_svg(fig, "Server: p99 latency against scheduled QPS")
