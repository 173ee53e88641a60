"""Agent presence and capabilities (published retained)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgebench.schemas.base import Count32, Count64, Identifier, StrictModel, Timestamp


class GpuInfo(StrictModel):
    index: Count32
    name: str
    uuid: str | None = None
    driver: str | None = None
    cuda: str | None = None
    mem_total_bytes: Count64 | None = None
    power_limit_w: float | None = None


class BackendInfo(StrictModel):
    backend: str
    available: bool
    executor: Literal["local", "docker"]
    detail: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    # what the framework itself sees here (runner/probe.py), so that a GPU job is
    # never sent to a box whose framework build is CPU-only
    accelerators: Count32 | None = Field(default=None, ge=0, le=1024,
                                     description="GPUs the framework sees; None: not probed")
    accelerator_detail: str = Field(default="", max_length=500)
    # an inference runtime's execution providers / devices here (ONNX Runtime's EPs, OpenVINO's devices)
    providers: list[str] = Field(default_factory=list, max_length=32)


class AgentStatus(StrictModel):
    kind: Literal["status"] = "status"
    device_id: Identifier
    fleet: Identifier
    online: bool
    at: Timestamp
    agent_version: str = ""
    tags: list[Identifier] = Field(default_factory=list)
    backends: list[BackendInfo] = Field(default_factory=list)
    gpus: list[GpuInfo] = Field(default_factory=list)
    busy_job_id: str | None = None
    queue_length: Count32 = 0
    host: str = ""
