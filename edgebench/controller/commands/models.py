"""``controller models``: export catalogue models for the inference runtimes on the
workstation, into the same digest-keyed cache an agent uses (docs/INFERENCE.md).

A box without torch or TensorFlow can then run the exported files: copy the cache
directory to the box's EDGEBENCH_MODEL_CACHE (issue 19 delivers them by digest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.console import Column
from edgebench.controller.commands._options import JsonOpt, out, output
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.runner.catalogue import WORKLOADS
from edgebench.runner.errors import RunnerError
from edgebench.runner.inference.artifacts import Cache, default_root
from edgebench.runner.inference.export import ensure
from edgebench.runner.inference.runtimes import artifact_request

app = typer.Typer(help="Model artifacts for the inference runtimes.", no_args_is_help=True)

CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Model cache (default EDGEBENCH_MODEL_CACHE or "
                                                                "~/.cache/edgebench/models).")]


EXPORT_COLUMNS = (Column("workload"), Column("runtime"), Column("precision"), Column("format"),
                  Column("sha256", fmt=lambda v: v[:16]), Column("bytes"), Column("exported"), Column("quantiser"))
CACHED_COLUMNS = (Column("sha256", fmt=lambda v: (v or "")[:16]), Column("model"), Column("dataset"),
                  Column("format"), Column("precision"), Column("source"), Column("quantiser"))


@app.command("export", epilog="Example: controller models export -w fashion-mnist-cnn -r onnxruntime -p int8")
def export_cmd(
    workload: Annotated[list[str], typer.Option("--workload", "-w", help="Catalogue workload (repeatable).")],
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", "-r", help="onnxruntime, openvino, litert, tensorrt (repeat; default: the CPU 3).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", "-p", help="fp32, fp16, int8 (repeatable; default fp32).")] = None,
    cache: CacheOpt = None,
    dataset_root: Annotated[Path | None, typer.Option(help="Calibrate int8 on real files found here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export once per (model, format, precision); cached files are found again, not redone."""
    store = Cache(str(cache) if cache else None)
    records = []
    for name in workload:
        if name not in WORKLOADS:
            raise ControllerUsageError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
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
                    raise ControllerError(f"{name} for {rt} {prec}: {exc}") from None
                records.append({"workload": name, "runtime": rt, "precision": prec, "format": art.format,
                                "sha256": art.sha256, "bytes": art.size_bytes,
                                "exported": "now" if fresh else "cached", "quantiser": art.meta.get("quantiser", "")})
    if as_json:
        output(True).json(records)
    else:
        out.table(EXPORT_COLUMNS, records, title=f"model cache {store.root}")


@app.command("cached", epilog="Example: controller models cached --json")
def cached(cache: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """List the artifacts in a model cache."""
    store = Cache(str(cache) if cache else default_root())
    records = list(store.list())
    if as_json:
        output(True).json(records)
    else:
        out.table(CACHED_COLUMNS, records, title=f"model cache {store.root}")
