"""Benchmark results, with the machine fingerprint and telemetry attached."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from edgebench.schemas.base import Count32, Count64, StrictModel, Timestamp
from edgebench.schemas.inference import InferenceRun
from edgebench.schemas.job import Backend, DataFormat, JobSpec, MemoryPolicy, Mode, Precision, Workload
from edgebench.schemas.power import JetsonState, PowerModeRun
from edgebench.schemas.status import GpuInfo
from edgebench.schemas.telemetry import TelemetrySummary, TimeSeries


class EpochStat(StrictModel):
    epoch: Count32 = Field(ge=1)
    warmup: bool
    images: Count64
    batches: Count64
    seconds: float = Field(ge=0)
    img_per_s: float = Field(ge=0)
    loss: float | None = None
    accuracy: float | None = None


class WindowPolicy(StrictModel):
    """How the measured window was sized: the job's minimums, the measured epochs it
    asked for, and how many the runner added to reach the minimums."""

    min_window_s: float = Field(ge=0)
    min_batches: Count64
    asked_epochs: Count32 = Field(description="measured epochs asked: workload.epochs - warmup_epochs")
    measured_epochs: Count32
    extended_epochs: Count32 = Field(description="measured_epochs beyond asked_epochs")
    met: bool = Field(description="both minimums held when the window closed (False: the epoch cap came first)")


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
    n_batches: Count64
    n_samples: Count64 | None = Field(
        default=None, ge=0, description="per-batch samples behind median/mean/std: n_batches, or fewer where "
        "short batches were pooled (absent in results from before it was recorded)"
    )
    images: Count64
    window_s: float = Field(ge=0)
    # absent in results from before they were recorded
    block_img_per_s: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, max_length=64, description="img/s of up to 10 blocks of consecutive batches that tile the "
        "window in time, for a batch-means interval: sum(block_images) / sum(block_images / block_img_per_s) "
        "is window_img_per_s"
    )
    block_images: list[Count64] | None = Field(
        default=None, max_length=64, description="images in each block (blocks differ by at most one batch)"
    )
    window_policy: WindowPolicy | None = None


class LatencySummary(StrictModel):
    """Per-batch latency for inference, warm-up excluded."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    n_batches: Count64


class RunResult(StrictModel):
    """One repeat of a job."""

    repeat: Count32 = Field(ge=1)
    epochs: list[EpochStat]
    throughput: ThroughputSummary
    latency: LatencySummary | None = None
    loss: float | None = None
    accuracy: float | None = None
    knobs: dict[str, str] = Field(default_factory=dict)
    inference: InferenceRun | None = None  # LoadGen runs (docs/INFERENCE.md); None for training and thin infer


class RepeatSpread(StrictModel):
    n: Count32
    min_img_per_s: float
    max_img_per_s: float
    std_img_per_s: float


class Fingerprint(StrictModel):
    host: str
    os: str
    kernel: str
    python: str
    cpu_model: str
    cpu_cores_logical: Count32
    cpu_cores_physical: Count32 | None
    ram_bytes: Count64
    gpus: list[GpuInfo] = Field(default_factory=list)
    libraries: dict[str, str] = Field(default_factory=dict)
    agent_version: str
    container_image: str | None = None
    container_digest: str | None = None
    arch: str | None = Field(default=None, max_length=32, description="platform.machine(): x86_64, aarch64")
    jetson: JetsonState | None = None  # on a Jetson: L4T, nvpmodel mode, jetson_clocks state


class DevicesUsed(StrictModel):
    """Where the framework actually ran the job, as the framework itself reports it
    (not what the job asked for): JAX's platform and devices, torch's device, TF's
    logical devices, MXNet's context, a runtime's execution provider."""

    framework: str = Field(max_length=64)
    kind: Literal["cpu", "gpu", "other"]
    devices: list[str] = Field(default_factory=list, max_length=256)
    detail: str = Field(default="", max_length=2000)


# JobSpec fields that older results copied beside the embedded job (results are
# stored for years: Result.from_stored_json drops them on read).
_LEGACY_JOB_COPIES = ("sweep_id", "backend", "mode", "workload", "precision", "data_format", "compile",
                      "memory_policy", "memory_fraction", "gpus")


class Result(StrictModel):
    """One job's measurements. What was asked is ``job`` (the one description of
    the job); everything else is what the device measured and where it ran."""

    job_id: str
    device_id: str
    job: JobSpec
    global_batch_size: Count32
    per_device_batch_size: Count32
    data_source: Literal["real", "synthetic"]
    summary: ThroughputSummary  # the median repeat
    repeat_spread: RepeatSpread
    runs: list[RunResult]
    knobs: dict[str, str] = Field(
        default_factory=dict, description="What was in force, as the runner reports it."
    )
    devices_used: DevicesUsed | None = None  # absent in results from before it was recorded
    power_mode: PowerModeRun | None = None  # Jetson: the nvpmodel mode around the job (job.power_mode)
    telemetry: TelemetrySummary | None = None
    timeseries: TimeSeries | None = None
    fingerprint: Fingerprint
    started_at: Timestamp
    finished_at: Timestamp

    @classmethod
    def from_stored_json(cls, text: str | bytes) -> Result:
        """Parse a stored result, also one written before the job's fields stopped
        being copied beside the embedded job (those copies are dropped)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            legacy = [e for e in exc.errors() if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
                      and e["loc"][0] in _LEGACY_JOB_COPIES]
            if not legacy:
                raise
        doc = json.loads(text)
        return cls.model_validate_json(json.dumps({k: v for k, v in doc.items() if k not in _LEGACY_JOB_COPIES}))

    # What was asked, read through the embedded job (one source of truth).
    @property
    def sweep_id(self) -> str | None:
        return self.job.sweep_id

    @property
    def backend(self) -> Backend:
        return self.job.backend

    @property
    def mode(self) -> Mode:
        return self.job.mode

    @property
    def workload(self) -> Workload:
        return self.job.workload

    @property
    def precision(self) -> Precision:
        return self.job.precision

    @property
    def data_format(self) -> DataFormat | None:
        return self.job.data_format

    @property
    def compile(self) -> bool | None:
        return self.job.compile

    @property
    def memory_policy(self) -> MemoryPolicy:
        return self.job.memory_policy

    @property
    def memory_fraction(self) -> float | None:
        return self.job.memory_fraction

    @property
    def gpus(self) -> int:
        return self.job.gpus
