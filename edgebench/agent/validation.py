"""Checks on an incoming job beyond its schema: what this agent can run.

Each failure names the offending field, which goes back in the REJECTED event.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebench.agent.errors import AgentError
from edgebench.runner.catalogue import MODEL_DATASETS
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
    if wl.dataset not in MODEL_DATASETS[wl.model]:
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
