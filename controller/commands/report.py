"""``controller report``: comparison tables from stored results."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.commands._options import (
    BackendFilterOpt,
    DeviceFilterOpt,
    ModelFilterOpt,
    SweepIdOpt,
    config,
    console,
)
from controller.render.terminal import render_terminal
from controller.report import build_report
from controller.store import ResultStore


def report(
    ctx: typer.Context,
    sweep: SweepIdOpt = None,
    device: DeviceFilterOpt = None,
    backend: BackendFilterOpt = None,
    model: ModelFilterOpt = None,
    baseline: Annotated[str, typer.Option(help="Backend the speed ratio is taken against.")] = "keras-tensorflow",
) -> None:
    """Per device and workload: img/s per backend and batch size, and the ratio to a baseline backend."""
    store = ResultStore(config(ctx).store_url)
    rows = store.results(sweep_id=sweep, device_id=device, backend=backend, model=model)
    render_terminal(build_report(rows, baseline), console)
