"""``controller models``: users' own model files (``add``, ``list``, ``rm``, ``serve``: the registry
and its embedded artifact server, docs/MODELS.md), and catalogue models exported for the inference
runtimes on the workstation into the digest-keyed cache an agent uses (``export``, ``cached``:
docs/INFERENCE.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.console import Column
from edgebench.controller.artifact_delivery import Delivery
from edgebench.controller.commands._options import JsonOpt, config, out, output, read_store, write_store
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.model_registry import parse_shape
from edgebench.runner.catalogue import WORKLOADS
from edgebench.runner.errors import RunnerError
from edgebench.runner.inference.artifacts import Cache, default_root
from edgebench.runner.inference.export import ensure
from edgebench.runner.inference.runtimes import artifact_request

app = typer.Typer(help="Users' model files (registry, delivery) and catalogue exports for the runtimes.",
                  no_args_is_help=True)

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


REGISTRY_COLUMNS = (Column("name"), Column("version"), Column("digest", fmt=lambda v: v[:16]), Column("format"),
                    Column("size_bytes", "bytes"), Column("input"), Column("classes"), Column("dataset"),
                    Column("added_by"))


@app.command("add", epilog="Example: controller models add ./classifier.onnx --name line3-defects --classes 4")
def add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An ONNX model or a Keras 3 .keras file (the format is read from "
                                              "the bytes, not the name).")],
    name: Annotated[str, typer.Option("--name", help="The model's name.")],
    version: Annotated[str | None, typer.Option(help="Its version [default: the next integer].",
                                                show_default=False)] = None,
    input_shape: Annotated[str | None, typer.Option(
        help="Per-sample input shape, e.g. 28,28,1 [default: the file's].", show_default=False)] = None,
    classes: Annotated[int | None, typer.Option(help="Output classes [default: the file's].",
                                                show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(
        help="A catalogue dataset of the model's input shape, read on the box when its files are there "
             "[default: synthetic data of the input signature].", show_default=False)] = None,
    layout: Annotated[str | None, typer.Option(help="NCHW, NHWC or flat [default: guessed from the shape].",
                                               show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model file under name@version; its identity is its sha256."""
    if layout is not None and layout not in ("NCHW", "NHWC", "flat"):
        raise ControllerUsageError("--layout: NCHW, NHWC or flat")
    delivery = Delivery(config(ctx), write_store(ctx))
    entry = delivery.registry.add(file, name, version, parse_shape(input_shape) if input_shape else None,
                                  classes, dataset, layout)
    if as_json:
        output(True).json(entry.record())
    else:
        out.print(f"{entry.ref}  sha256:{entry.digest}  {entry.format}  {entry.size_bytes} bytes")


@app.command("list", epilog="Example: controller models list --json")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The registered models."""
    records = [e.record() for e in Delivery(config(ctx), read_store(ctx)).registry.entries()]
    if as_json:
        output(True).json(records)
    else:
        out.table(REGISTRY_COLUMNS, records, title="registered models")


@app.command("rm", epilog="Example: controller models rm line3-defects@2")
def rm(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="name@version, or sha256:DIGEST (every name "
                                                                  "of that file).")]) -> None:
    """Unregister a model; its file is deleted when no other name refers to it."""
    entry = Delivery(config(ctx), write_store(ctx)).registry.remove(ref)
    out.print(f"removed {entry.ref} (sha256:{entry.digest[:16]})")


@app.command("serve", epilog="Example: controller models serve --port 8650")
def serve(ctx: typer.Context, port: Annotated[int | None, typer.Option(
        help="Port [default: artifact_port, 8650].", show_default=False)] = None) -> None:
    """Serve registered models to agents over HTTP(S), per-job signed URLs only, until interrupted."""
    import time

    delivery = Delivery(config(ctx), read_store(ctx))
    with delivery.server(port) as server:
        out.print(f"serving {delivery.registry.dir} on port {server.port} (base URL {delivery.base_url})")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
