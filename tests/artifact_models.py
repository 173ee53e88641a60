"""Small real model files for the users'-models tests (issue 19): ONNX built with onnx.helper,
.keras saved by Keras 3 itself (in a child process: KERAS_BACKEND must be set before Keras loads)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np


def make_onnx(path: Path, shape: tuple[int, ...] = (1, 8, 8), classes: int = 4, domain: str = "",
              external: str | None = None) -> Path:
    """Flatten, Gemm, Add: logits of a linear classifier with seeded weights.

    domain: put the Add in this custom operator domain; external: keep the weights in this
    external-data location (written next to the model) instead of inside the file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int(np.prod(shape))
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.linspace(-1, 1, classes).astype(np.float32), "b")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    add = helper.make_node("FancyAdd" if domain else "Add", ["g", "b"], ["logits"], domain=domain)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "w"], ["g"]),
             add]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph(nodes, "user", [x], [y], [w, b]), opset_imports=opsets)
    model.ir_version = 8
    if external is not None:
        from onnx.external_data_helper import set_external_data

        raw = w.raw_data
        target = (path.parent / external)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        tensor = model.graph.initializer[0]
        set_external_data(tensor, location=external, length=len(raw))
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
    path.write_bytes(model.SerializeToString())
    return path


KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras
layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten()]
if sys.argv[2] == "lambda":
    layers.append(keras.layers.Lambda(lambda t: t * 2.0))
layers.append(keras.layers.Dense(4, activation="softmax"))
keras.utils.set_random_seed(0)
keras.Sequential(layers).save(sys.argv[1])
"""


def make_keras(path: Path, kind: str = "plain") -> Path:
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", textwrap.dedent(KERAS_SCRIPT), str(path), kind], check=True, env=env,
                   capture_output=True, timeout=300)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ref_doc(path: Path, fmt: str, url: str | None = None, kind: str = "http", shape: tuple[int, ...] = (1, 8, 8),
            layout: str = "NCHW", digest: str | None = None, size: int | None = None, **location: Any
            ) -> dict[str, Any]:
    """A ModelArtifactRef document for a file."""
    loc: dict[str, Any] = {"kind": kind, **location}
    if url is not None:
        loc["url"] = url
    return {"name": path.stem.replace("_", "-")[:60] or "m", "version": "1", "digest": digest or sha256(path),
            "format": fmt, "size_bytes": path.stat().st_size if size is None else size,
            "input": {"name": "input", "shape": list(shape), "dtype": "float32", "layout": layout},
            "classes": 4, "location": loc}
