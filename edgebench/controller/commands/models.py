"""``controller models``: export catalogue models for the inference runtimes on the
workstation, into the same digest-keyed cache an agent uses (docs/INFERENCE.md).

A box without torch or TensorFlow can then run the exported files: copy the cache
directory to the box's EDGEBENCH_MODEL_CACHE (issue 19 delivers them by digest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgebench.controller.commands._options import console, fail
from edgebench.runner.catalogue import WORKLOADS
from edgebench.runner.errors import RunnerError
from edgebench.runner.inference.artifacts import Cache, default_root
from edgebench.runner.inference.export import ensure
from edgebench.runner.inference.runtimes import artifact_request

app = typer.Typer(help="Model artifacts for the inference runtimes.", no_args_is_help=True)

CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Model cache (default EDGEBENCH_MODEL_CACHE or "
                                                                "~/.cache/edgebench/models).")]


@app.command("export")
def export_cmd(
    workload: Annotated[list[str], typer.Option("--workload", "-w", help="Catalogue workload (repeatable).")],
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", "-r", help="onnxruntime, openvino, litert, tensorrt (repeat; default: the CPU 3).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", "-p", help="fp32, fp16, int8 (repeatable; default fp32).")] = None,
    cache: CacheOpt = None,
    dataset_root: Annotated[Path | None, typer.Option(help="Calibrate int8 on real files found here.")] = None,
) -> None:
    """Export once per (model, format, precision); cached files are found again, not redone."""
    store = Cache(str(cache) if cache else None)
    table = Table(title=f"model cache {store.root}")
    for col in ("workload", "runtime", "precision", "format", "sha256", "bytes", "exported", "quantiser"):
        table.add_column(col)
    for name in workload:
        if name not in WORKLOADS:
            raise fail(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        wl = WORKLOADS[name]
        for rt in runtime or ["onnxruntime", "openvino", "litert"]:
            for prec in precision or ["fp32"]:
                try:
                    need = artifact_request(rt, prec)
                    if need is None:
                        continue  # torch runs its own module
                    art, fresh = ensure(wl["model"], wl["dataset"], need[0], need[1], runtime=rt, cache=store,
                                        dataset_root=str(dataset_root) if dataset_root else None)
                except RunnerError as exc:
                    raise fail(f"{name} for {rt} {prec}: {exc}") from None
                table.add_row(name, rt, prec, art.format, art.sha256[:16], str(art.size_bytes),
                              "now" if fresh else "cached", art.meta.get("quantiser", "")[:60])
    console.print(table)


@app.command("cached")
def cached(cache: CacheOpt = None) -> None:
    """List the artifacts in a model cache."""
    store = Cache(str(cache) if cache else default_root())
    table = Table(title=f"model cache {store.root}")
    for col in ("sha256", "model", "dataset", "format", "precision", "source", "quantiser"):
        table.add_column(col)
    for meta in store.list():
        table.add_row(meta.get("sha256", "")[:16], str(meta.get("model", "")), str(meta.get("dataset", "")),
                      meta.get("format", ""), meta.get("precision", ""), meta.get("source", "")[:50],
                      meta.get("quantiser", "")[:50])
    console.print(table)
