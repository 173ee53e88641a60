"""A document's charts (controller/render/table.py ``Chart``) drawn by kind, for the HTML renderer."""

from __future__ import annotations

from typing import Any

from edgebench.controller.render import charts, history_charts, inference_charts, timeseries
from edgebench.controller.render.table import Chart


def draw(chart: Chart) -> str | None:
    """The chart as inline SVG, or None for a kind this version cannot draw."""
    kinds: dict[str, Any] = {
        "figure4": charts.figure4, "batch": charts.batch_chart, "fleet": charts.fleet_chart,
        "energy": charts.energy_chart, "scaling": charts.scaling_chart,
        "timeseries": lambda d: timeseries.timeseries_chart(*d),
        "history": history_charts.history_chart, "compare": history_charts.compare_chart,
        "latency_cdf": inference_charts.latency_cdf_chart, "server_curve": inference_charts.server_chart,
    }
    draw_fn = kinds.get(chart.kind)
    return None if draw_fn is None else draw_fn(chart.data)
