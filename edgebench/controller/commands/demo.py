"""``controller demo``: the quickstart on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.controller.commands._options import config, console, fail
from edgebench.controller.demo import DemoError, DemoOptions, run_demo


def demo(
    ctx: typer.Context,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="Backends (default: two installed).")
    ] = None,
    dataset_root: Annotated[
        Path | None, typer.Option(help="Where Fashion-MNIST files are looked up [default: ~/edgebench-data].")
    ] = None,
    cnn_samples: Annotated[int, typer.Option(help="Training samples for the CNN (the CPU is slow).")] = 4096,
    mlp_samples: Annotated[int, typer.Option(help="Training samples for the MLP.")] = 60000,
) -> None:
    """Start an embedded broker and a local agent, run the study's MLP and CNN on two backends, print the report."""
    root = dataset_root or Path.home() / "edgebench-data"
    opts = DemoOptions(store_url=config(ctx).store_url, dataset_root=root, backends=tuple(backend or ()),
                       cnn_samples=cnn_samples, mlp_samples=mlp_samples)
    try:
        run_demo(opts, console)
    except DemoError as exc:
        raise fail(str(exc), 1) from None
