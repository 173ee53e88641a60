"""Checks on an incoming job beyond its schema: what this agent can run.

Each failure names the offending field, which goes back in the REJECTED event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from edgebench.agent.errors import AgentError
from edgebench.runner.catalogue import DATASETS, MODEL_DATASETS
from edgebench.schemas import BackendInfo, JobSpec, Mode


@dataclass(frozen=True)
class Rejection(AgentError):
    reason: str
    field: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def check_job(job: JobSpec, backends: dict[str, BackendInfo], gpu_count: int) -> None:
    """Raise Rejection if this agent cannot run the job."""
    info = backends.get(job.backend.value)
    if info is None:
        raise Rejection(f"backend {job.backend.value!r} is not configured on this agent", "backend")
    if not info.available:
        raise Rejection(f"backend {job.backend.value!r} is not available here: {info.detail}", "backend")
    wl = job.workload
    if job.model_artifact is not None:
        _check_user_model(job, info)
    elif wl.dataset not in MODEL_DATASETS[wl.model]:
        raise Rejection(
            f"model {wl.model!r} does not run on dataset {wl.dataset!r} "
            f"(allowed: {', '.join(MODEL_DATASETS[wl.model])})",
            "workload.dataset",
        )
    if job.gpus > gpu_count:
        raise Rejection(f"job asks for {job.gpus} GPUs, this device has {gpu_count}", "gpus")
    if job.gpus and info.accelerators is not None and job.gpus > info.accelerators:
        # a GPU job must never run on the CPU: the backend's own framework is the judge
        raise Rejection(f"job asks for {job.gpus} GPU(s), but backend {job.backend.value!r} sees "
                        f"{info.accelerators} here: {info.accelerator_detail}", "gpus")
    if job.mode is Mode.INFER and job.warmup_epochs >= wl.epochs:
        raise Rejection("workload.epochs must exceed warmup_epochs", "warmup_epochs")


# which backends run which model format (docs/MODELS.md): ONNX on the runtimes under LoadGen,
# .keras on the Keras 3 backends (training, the thin per-batch infer mode, and LoadGen)
FORMAT_BACKENDS = {"onnx": ("onnxruntime", "openvino", "litert"),
                   "keras": ("keras-jax", "keras-torch", "keras-tensorflow")}


def _check_user_model(job: JobSpec, info: BackendInfo) -> None:
    ref = job.model_artifact
    assert ref is not None
    runs_on = FORMAT_BACKENDS.get(ref.format, ())
    if job.backend.value not in runs_on:
        raise Rejection(f"a {ref.format} model runs on {', '.join(runs_on) or 'no backend yet'}, not "
                        f"{job.backend.value}", "backend")
    if job.precision.value != "fp32" and ref.format == "keras":
        # the file's own dtype policies decide
        raise Rejection("a user's keras model runs fp32", "precision")
    if job.precision.value == "bf16" and job.backend.value in ("onnxruntime", "litert"):
        # fp16 and int8 variants of a user's ONNX file are made on the box (runner/inference/export.py)
        raise Rejection(f"a user's onnx model runs fp32, fp16 or int8 on {job.backend.value} (no bf16 variant)",
                        "precision")
    wl = job.workload
    if wl.dataset != "artifact-input":
        shape = tuple(cast("tuple[int, ...]", DATASETS[wl.dataset]["shape"]))  # plain data (runner/catalogue.py)
        if sorted(shape) != sorted(ref.input.shape):
            raise Rejection(f"dataset {wl.dataset} has samples of {tuple(shape)}; the model takes "
                            f"{tuple(ref.input.shape)}", "workload.dataset")
