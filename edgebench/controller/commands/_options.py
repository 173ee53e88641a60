"""Shared option aliases and helpers for the controller's commands.

Commands raise (edgebench/common/errors.py); the CLI edge (edgebench/common/cli.py)
turns errors into one line on stderr and the exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.console import Output
from edgebench.controller.config import ControllerConfig
from edgebench.controller.store import ResultStore
from edgebench.runner.catalogue import WORKLOADS
from edgebench.schemas import Backend

out = Output()  # for people; a command given --json makes its own Output(as_json=True)

BACKENDS = ", ".join(b.value for b in Backend)
WORKLOAD_NAMES = ", ".join(WORKLOADS)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (messages go to stderr).")]
SweepIdOpt = Annotated[str | None, typer.Option("--sweep", help="Only results of this sweep id.")]
DeviceFilterOpt = Annotated[str | None, typer.Option("--device", help="Only this device.")]
BackendFilterOpt = Annotated[str | None, typer.Option("--backend", help=f"Only this backend: {BACKENDS}.")]
ModelFilterOpt = Annotated[str | None, typer.Option("--model", help="Only this model (mlp, cnn, resnet56, resnet50).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")]


def config(ctx: typer.Context) -> ControllerConfig:
    cfg = ctx.find_root().obj
    assert isinstance(cfg, ControllerConfig), "the root callback sets ctx.obj"
    return cfg


def read_store(ctx: typer.Context) -> ResultStore:
    """The store of a command that only reads it: a missing SQLite file is an error, not a new database."""
    return ResultStore(config(ctx).store_url, create=False)


def write_store(ctx: typer.Context) -> ResultStore:
    return ResultStore(config(ctx).store_url)


def output(as_json: bool) -> Output:
    return Output(as_json=True) if as_json else out
