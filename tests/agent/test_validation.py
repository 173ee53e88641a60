"""The agent's acceptance rules for a user's model (agent/validation.py): which precisions a user's file runs
in, refused before anything runs with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.agent.validation import Rejection, check_job
from edgebench.controller.plan import build_job
from edgebench.schemas import BackendInfo
from edgebench.schemas.artifact import ModelArtifactRef
from tests.artifact_models import make_keras, make_onnx, ref_doc


def _job(tmp_path: Path, fmt: str, backend: str, precision: str,  # type: ignore[no-untyped-def]
         loadgen: bool = False):
    if fmt == "onnx":
        doc = ref_doc(make_onnx(tmp_path / "m.onnx"), "onnx", kind="directory", shape=(1, 8, 8), layout="NCHW")
    else:
        doc = ref_doc(make_keras(tmp_path / "m.keras"), "keras", kind="directory", shape=(8, 8, 1), layout="NHWC")
    ref = ModelArtifactRef.model_validate(doc)
    case = {"backend": backend, "model": "m", "precision": precision}
    if fmt == "onnx" or loadgen:
        case.update(mode="infer", scenario="single-stream")
    return build_job(case, f"j-{backend}-{precision}", None, lambda _ref, _job: (ref, None))


def _backends(name: str) -> dict[str, BackendInfo]:
    return {name: BackendInfo(backend=name, available=True, executor="local")}


@pytest.mark.parametrize(("fmt", "backend", "precision"), [
    ("onnx", "onnxruntime", "fp32"), ("onnx", "onnxruntime", "fp16"), ("onnx", "onnxruntime", "int8"),
    ("onnx", "openvino", "int8"), ("onnx", "openvino", "bf16"), ("onnx", "litert", "fp32"), ("onnx", "litert", "int8"),
    ("keras", "keras-jax", "fp32")])
def test_the_precisions_a_users_model_runs_in_are_accepted(tmp_path: Path, fmt: str, backend: str,
                                                          precision: str) -> None:
    check_job(_job(tmp_path, fmt, backend, precision), _backends(backend), gpu_count=0)


@pytest.mark.parametrize("backend", ["keras-jax", "keras-torch", "keras-tensorflow"])
def test_a_users_keras_model_under_loadgen_is_accepted(tmp_path: Path, backend: str) -> None:
    job = _job(tmp_path, "keras", backend, "fp32", loadgen=True)
    assert job.inference is not None
    check_job(job, _backends(backend), gpu_count=0)


@pytest.mark.parametrize(("fmt", "backend", "precision", "words"), [
    ("onnx", "onnxruntime", "bf16", "no bf16 variant"), ("onnx", "litert", "bf16", "no bf16 variant"),
    ("keras", "keras-jax", "fp16", "runs fp32")])
def test_other_precisions_are_refused_naming_the_field(tmp_path: Path, fmt: str, backend: str, precision: str,
                                                      words: str) -> None:
    with pytest.raises(Rejection) as err:
        check_job(_job(tmp_path, fmt, backend, precision), _backends(backend), gpu_count=0)
    assert err.value.field == "precision" and words in str(err.value)
