"""Shared option aliases and helpers for the controller's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgebench.controller.config import ControllerConfig

console = Console()
err_console = Console(stderr=True)

SweepIdOpt = Annotated[str | None, typer.Option("--sweep", help="Only results of this sweep id.")]
DeviceFilterOpt = Annotated[str | None, typer.Option("--device", help="Only this device.")]
BackendFilterOpt = Annotated[str | None, typer.Option("--backend", help="Only this backend.")]
ModelFilterOpt = Annotated[str | None, typer.Option("--model", help="Only this model (mlp, cnn, ...).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")]


def config(ctx: typer.Context) -> ControllerConfig:
    cfg = ctx.obj
    assert isinstance(cfg, ControllerConfig), "the root callback sets ctx.obj"
    return cfg


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)
