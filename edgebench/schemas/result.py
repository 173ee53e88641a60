"""Benchmark results, with the machine fingerprint and telemetry attached."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from edgebench.schemas.base import StrictModel
from edgebench.schemas.job import Backend, DataFormat, JobSpec, MemoryPolicy, Mode, Precision, Workload
from edgebench.schemas.status import GpuInfo
from edgebench.schemas.telemetry import TelemetrySummary, TimeSeries


class EpochStat(StrictModel):
    epoch: int = Field(ge=1)
    warmup: bool
    images: int = Field(ge=0)
    batches: int = Field(ge=0)
    seconds: float = Field(ge=0)
    img_per_s: float = Field(ge=0)
    loss: float | None = None
    accuracy: float | None = None


class ThroughputSummary(StrictModel):
    """Throughput over the measured window (warm-up epochs, build, compile and
    validation excluded).

    ``window_img_per_s`` is images / wall time of the window, closed only after
    the device finished; median/mean/std are over per-batch throughputs.
    ``n_batches`` counts the measured batches. Where batch ends are seen on
    Keras's callback threads (Keras 3 on JAX or PyTorch), consecutive batches
    shorter than 5 ms are pooled into one sample of at least 5 ms, so that
    thread wake-up jitter does not pass for step-time dispersion.
    """

    window_img_per_s: float = Field(ge=0)
    median_img_per_s: float = Field(ge=0)
    mean_img_per_s: float = Field(ge=0)
    std_img_per_s: float = Field(ge=0)
    n_batches: int = Field(ge=0)
    n_samples: int | None = Field(
        default=None, ge=0, description="per-batch samples behind median/mean/std: n_batches, or fewer where "
        "short batches were pooled (absent in results from before it was recorded)"
    )
    images: int = Field(ge=0)
    window_s: float = Field(ge=0)


class LatencySummary(StrictModel):
    """Per-batch latency for inference, warm-up excluded."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    n_batches: int


class RunResult(StrictModel):
    """One repeat of a job."""

    repeat: int = Field(ge=1)
    epochs: list[EpochStat]
    throughput: ThroughputSummary
    latency: LatencySummary | None = None
    loss: float | None = None
    accuracy: float | None = None
    knobs: dict[str, str] = Field(default_factory=dict)


class RepeatSpread(StrictModel):
    n: int
    min_img_per_s: float
    max_img_per_s: float
    std_img_per_s: float


class Fingerprint(StrictModel):
    host: str
    os: str
    kernel: str
    python: str
    cpu_model: str
    cpu_cores_logical: int
    cpu_cores_physical: int | None
    ram_bytes: int
    gpus: list[GpuInfo] = Field(default_factory=list)
    libraries: dict[str, str] = Field(default_factory=dict)
    agent_version: str
    container_image: str | None = None
    container_digest: str | None = None


class Result(StrictModel):
    job_id: str
    device_id: str
    sweep_id: str | None = None
    backend: Backend
    mode: Mode
    workload: Workload
    precision: Precision
    data_format: DataFormat | None
    compile: bool | None
    memory_policy: MemoryPolicy
    memory_fraction: float | None = None
    gpus: int
    global_batch_size: int
    per_device_batch_size: int
    data_source: Literal["real", "synthetic"]
    summary: ThroughputSummary  # the median repeat
    repeat_spread: RepeatSpread
    runs: list[RunResult]
    knobs: dict[str, str] = Field(
        default_factory=dict, description="What was in force, as the runner reports it."
    )
    telemetry: TelemetrySummary | None = None
    timeseries: TimeSeries | None = None
    fingerprint: Fingerprint
    job: JobSpec
    started_at: datetime
    finished_at: datetime
