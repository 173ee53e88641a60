"""What a model file is, read from its bytes (never from its name), and whether edgebench may load it.

A registered file runs on every box of a fleet, so the controller refuses, before it is
registered, anything that would run code or read outside the file when loaded:

- ONNX (a protobuf ``ModelProto``): parsed with ``onnx`` without its external data, checked
  with ``onnx.checker``; only the standard operator domains (``ai.onnx``, ``ai.onnx.ml``) are
  accepted, since a custom domain names a kernel library each runtime would have to load;
  external data is refused when its path leaves the model's directory (and, as delivery sends
  one file, in every case: save the weights inside the file).
- Keras 3 ``.keras`` (a zip with ``config.json``): every object in the config must come from a
  ``keras`` module, and a ``Lambda`` layer (Python bytecode in the config) is refused; the runner
  loads it with ``safe_mode=True`` too, which refuses the same layer again.
- ``torch.export`` ``.pt2`` (a zip whose ``archive_format`` says ``pt2``) is recognised and
  refused: its loader unpickles parts of the archive, and edgebench never unpickles.

Anything else (pickle, SavedModel, HDF5, a renamed file) is refused with what it looks like.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.controller.errors import ControllerUsageError

STANDARD_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
# a Keras config is JSON of at most a few MB; a bigger one is not a model config
MAX_KERAS_CONFIG_BYTES = 64 * 1024 * 1024
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ModelFileError(ControllerUsageError):
    """The file is not a model edgebench loads, or it would load something it must not."""


@dataclass(frozen=True)
class ModelFacts:
    """What the file says about itself; None where it does not say."""

    format: str  # onnx, keras, pt2
    input_name: str
    input_shape: tuple[int, ...] | None  # per sample, without the batch dimension
    dtype: str
    classes: int | None
    detail: str  # opset or Keras version, for the listing


EXTENSIONS = {".onnx": "onnx", ".keras": "keras", ".pt2": "pt2"}


def inspect(path: Path) -> ModelFacts:
    """Sniff and validate a model file; ModelFileError says why it is refused.

    The bytes decide the format; a known extension that says otherwise is refused too (a
    renamed file is a mistake or a trick, and the listing would mislead)."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04"):
        facts = _zip_model(path)
    elif head.startswith(_HDF5_MAGIC):
        raise ModelFileError(f"{path.name}: an HDF5 file (legacy Keras .h5); save the model as .keras instead")
    elif head[:2] in _PICKLE_MAGIC:
        raise ModelFileError(f"{path.name}: a Python pickle; edgebench never loads pickles")
    else:
        facts = _onnx_model(path)
    said = EXTENSIONS.get(path.suffix.lower())
    if said is not None and said != facts.format:
        raise ModelFileError(f"{path.name}: the name says {said}, the content is {facts.format}")
    return facts


def _zip_model(path: Path) -> ModelFacts:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "config.json" in names and "metadata.json" in names:
                info = zf.getinfo("config.json")
                if info.file_size > MAX_KERAS_CONFIG_BYTES:
                    raise ModelFileError(f"{path.name}: config.json is {info.file_size} bytes")
                config = json.loads(zf.read("config.json"))
                metadata = json.loads(zf.read("metadata.json"))
                return _keras_facts(path, config, metadata)
            if any(n.endswith("archive_format") for n in names):
                raise ModelFileError(f"{path.name}: a torch.export .pt2 archive; its loader unpickles parts of it, "
                                     "and edgebench never unpickles: export the model to ONNX instead")
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path.name}: a damaged zip ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path.name}: config.json or metadata.json is not JSON ({exc})") from None
    raise ModelFileError(f"{path.name}: a zip without a Keras config.json (not a .keras model)")


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _keras_facts(path: Path, config: Any, metadata: Any) -> ModelFacts:
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{path.name}: config.json is not a Keras model config")
    input_shape: tuple[int, ...] | None = None
    dense_units: int | None = None
    for node in _walk(config):
        cls = node.get("class_name")
        if not isinstance(cls, str):
            continue
        if cls == "Lambda":
            raise ModelFileError(f"{path.name}: a Lambda layer (Python code in the model); Keras safe mode "
                                 "refuses it, and so does edgebench")
        module = node.get("module")
        if isinstance(module, str) and module and not module.startswith("keras"):
            raise ModelFileError(f"{path.name}: {cls} comes from module {module!r}; only Keras' own objects load")
        if module is None and node.get("registered_name") not in (None, cls):
            raise ModelFileError(f"{path.name}: custom object {node.get('registered_name')!r}")
        inner = node.get("config")
        if not isinstance(inner, dict):
            continue
        if cls == "InputLayer" and input_shape is None:
            shape = inner.get("batch_shape") or inner.get("batch_input_shape")
            input_shape = _per_sample(shape)
        if cls == "Dense" and isinstance(inner.get("units"), int):
            dense_units = inner["units"]  # the last Dense in the config is the classifier
    if input_shape is None:
        input_shape = _per_sample((config.get("build_config") or {}).get("input_shape"))
    version = metadata.get("keras_version", "?") if isinstance(metadata, dict) else "?"
    return ModelFacts("keras", "input", input_shape, "float32", dense_units, f"Keras {version}")


def _per_sample(shape: Any) -> tuple[int, ...] | None:
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    dims = shape[1:]
    if all(isinstance(d, int) and d > 0 for d in dims):
        return tuple(dims)
    return None


_ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 6: "int32", 7: "int64"}


def _onnx_model(path: Path) -> ModelFacts:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(f"{path.name}: not an ONNX model, Keras .keras or torch .pt2 file ({exc})") from None
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node:
        raise ModelFileError(f"{path.name}: not an ONNX model (no IR version, opset or graph nodes)")
    domains = {o.domain for o in model.opset_import} | {n.domain for n in model.graph.node}
    domains |= {n.domain for f in model.functions for n in f.node}
    custom = sorted(d for d in domains if d not in STANDARD_ONNX_DOMAINS)
    if custom:
        raise ModelFileError(f"{path.name}: custom operator domain(s) {', '.join(custom)}; only the standard "
                             "ONNX operators run on every runtime")
    _check_external_data(path, model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"{path.name}: onnx.checker refuses it: {str(exc).splitlines()[0][:300]}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"{path.name}: {len(inputs)} graph inputs; edgebench feeds models with one input")
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    shape = tuple(int(d) for d in dims[1:] if d) if len(dims) >= 2 and all(dims[1:]) else None
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in
                model.graph.output[0].type.tensor_type.shape.dim] if model.graph.output else []
    classes = out_dims[-1] if out_dims and out_dims[-1] else None
    dtype = _ONNX_DTYPES.get(tensor.elem_type)
    if dtype is None:
        raise ModelFileError(f"{path.name}: input element type {tensor.elem_type} is not one edgebench feeds")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelFacts("onnx", inputs[0].name, shape, dtype, classes, f"ONNX IR {model.ir_version}, opset {opset}")


def _check_external_data(path: Path, model: Any) -> None:
    import onnx

    base = path.resolve().parent
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (base / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(base):
            raise ModelFileError(f"{path.name}: tensor {tensor.name!r} reads external data from {location!r}, "
                                 "outside the model's directory")
        raise ModelFileError(f"{path.name}: tensor {tensor.name!r} keeps its data in {location!r}; edgebench "
                             "delivers one file: save with onnx.save(model, path, save_as_external_data=False)")
