"""``controller demo``: the quickstart on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.controller.commands._options import BACKENDS, out
from edgebench.controller.demo import DemoOptions, default_demo_store_url, run_demo


def demo(
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help=f"Backends: {BACKENDS} [default: the first two installed of keras-jax, keras-torch, "
        "keras-tensorflow, torch].", show_default=False)] = None,
    dataset_root: Annotated[Path | None, typer.Option(
        help="Where Fashion-MNIST files are looked up [default: ~/edgebench-data].", show_default=False)] = None,
    cnn_samples: Annotated[int, typer.Option(help="Training samples for the CNN (the CPU is slow).")] = 4096,
    mlp_samples: Annotated[int, typer.Option(help="Training samples for the MLP.")] = 60000,
    demo_store: Annotated[str | None, typer.Option(
        help="Where the demo's results go [default: demo.db beside the default results store, so fleet "
        "reports never mix with demo runs].", show_default=False)] = None,
) -> None:
    """Start an embedded broker (the 'broker' extra) and a local agent, run the study's MLP and CNN on two
    backends, print the report of that sweep."""
    root = dataset_root or Path.home() / "edgebench-data"
    opts = DemoOptions(store_url=demo_store or default_demo_store_url(), dataset_root=root,
                       backends=tuple(backend or ()), cnn_samples=cnn_samples, mlp_samples=mlp_samples)
    run_demo(opts, out.for_renderables())
