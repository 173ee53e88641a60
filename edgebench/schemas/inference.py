"""Inference on deployment runtimes under MLPerf LoadGen: what a job asks
(:class:`InferenceSettings`, in ``JobSpec.inference``) and what a run measured
(:class:`InferenceRun`, in ``RunResult.inference``). docs/INFERENCE.md explains
every field; the runner side is ``edgebench/runner/inference/``.

Additive to the contract: a job without ``inference`` and a result without
``RunResult.inference`` are what they were before.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from edgebench.schemas.base import Count64, Identifier, Int, Sha256, StrictModel


class Scenario(str, Enum):
    """MLPerf LoadGen's scenarios and the figure each one reports."""

    SINGLE_STREAM = "single-stream"  # one sample per query, next query when the last finished: p90 latency
    MULTI_STREAM = "multi-stream"  # samples_per_query (8) per query, back to back: p99 latency
    OFFLINE = "offline"  # every sample in one query: samples/s
    SERVER = "server"  # Poisson arrivals at target_qps: VALID while p99 <= target_latency_ms


class LoadGenRules(str, Enum):
    """Which minimums are in force: MLPerf's (mlperf.conf inside LoadGen: 600 s,
    per-scenario query counts, early stopping) or a documented short run."""

    MLPERF = "mlperf"
    QUICK = "quick"


# the quick mode's defaults (docs/INFERENCE.md): seconds, not the 600 s MLPerf asks
QUICK_MIN_DURATION_MS = 2000
QUICK_MIN_QUERY_COUNT = 64


class InferenceSettings(StrictModel):
    """How an inference job runs: the LoadGen scenario and its settings, and the
    runtime's knobs. None for a knob means the runtime's default (recorded in the result)."""

    scenario: Scenario = Scenario.SINGLE_STREAM
    rules: LoadGenRules = LoadGenRules.MLPERF
    min_duration_ms: Int | None = Field(default=None, ge=1, le=24 * 3600 * 1000,
                                        description="Override the rules' minimum duration.")
    max_duration_ms: Int | None = Field(default=None, ge=1, le=24 * 3600 * 1000,
                                        description="Stop there even if the minimums are not met (then INVALID).")
    min_query_count: Int | None = Field(default=None, ge=1, le=100_000_000)
    max_query_count: Int | None = Field(default=None, ge=1, le=100_000_000)
    target_qps: float | None = Field(default=None, gt=0, le=10_000_000,
                                     description="Server: the arrival rate; Offline: the expected samples/s.")
    target_latency_ms: float | None = Field(default=None, gt=0, le=3_600_000,
                                            description="Server: the latency bound at its percentile (p99).")
    samples_per_query: Int = Field(default=8, ge=1, le=4096, description="MultiStream's samples per query.")
    performance_sample_count: Int | None = Field(default=None, ge=1, le=1_000_000,
                                                 description="Samples LoadGen draws from (held in memory).")
    execution_provider: Identifier | None = Field(
        default=None,
        description="ONNX Runtime EP (cpu, cuda, tensorrt), OpenVINO device (CPU, GPU), torch device (cpu, cuda).")
    graph_optimization: Literal["disabled", "basic", "extended", "all"] | None = None
    threads: Int | None = Field(default=None, ge=1, le=1024, description="Intra-op threads.")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = Field(
        default=None, description="torch: torch.compile's mode (reduce-overhead = CUDA graphs); None: eager.")
    performance_hint: Literal["latency", "throughput"] | None = Field(
        default=None, description="OpenVINO's PERFORMANCE_HINT; None: latency, throughput for Offline.")
    reference_samples: Int = Field(default=16, ge=1, le=256, description="The equivalence batch.")
    accuracy_samples: Int | None = Field(
        default=None, ge=1, le=100_000, description="Real top-1 on this many dataset samples, when files are there.")
    model_sha256: Sha256 | None = Field(
        default=None,
        description="Run this cached artifact instead of the catalogue model's export (its reference travels with it).")

    # cross-field rules name the field to fix; JSON Schema cannot compare two numbers,
    # so the JSON Schema states them in words (x-edgebench-rules)
    @field_validator("max_duration_ms")
    @classmethod
    def _max_duration(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_duration_ms")
        if value is not None and low is not None and value < low:
            raise ValueError(f"is below min_duration_ms ({low})")
        return value

    @field_validator("max_query_count")
    @classmethod
    def _max_queries(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_query_count")
        if value is not None and low is not None and value < low:
            raise ValueError(f"is below min_query_count ({low})")
        return value

    model_config = ConfigDict(json_schema_extra={"x-edgebench-rules": [
        "max_duration_ms >= min_duration_ms", "max_query_count >= min_query_count"]})


class ModelArtifactInfo(StrictModel):
    """The exact model file a runtime ran."""

    format: Literal["onnx", "tflite", "openvino-ir", "torch-module", "keras"]
    sha256: Sha256
    size_bytes: Count64
    precision: str = Field(max_length=32)  # fp32, fp16, int8 (the file's), see InferenceRun.knobs for compute
    source: str = Field(default="", max_length=500)  # framework, version and exporter that wrote it
    quantiser: str = Field(default="", max_length=500)
    calibration: str = Field(default="", max_length=500)


class LoadGenSummary(StrictModel):
    """LoadGen's own verdict and figures, read from its detail log (mlperf_log_detail.txt)."""

    loadgen_version: str = Field(max_length=200)
    scenario: str = Field(max_length=32)  # LoadGen's name: SingleStream, MultiStream, Offline, Server
    mode: str = Field(max_length=32)
    rules: LoadGenRules
    valid: bool  # LoadGen's result_validity == VALID
    min_duration_met: bool | None = None
    min_queries_met: bool | None = None
    early_stopping_met: bool | None = None
    invalid_reason: str = Field(default="", max_length=2000)
    query_count: Count64
    sample_count: Count64
    duration_s: float = Field(ge=0)  # LoadGen's timed run, power_begin to power_end
    samples_per_s: float | None = None  # Offline's result; Server: completed samples/s
    qps_with_loadgen_overhead: float | None = None  # SingleStream / MultiStream
    qps_without_loadgen_overhead: float | None = None
    scheduled_qps: float | None = None  # Server
    latency_ns: dict[str, float] = Field(
        default_factory=dict, description="min, max, mean, p50, p90, p95, p97, p99, p99.9 as LoadGen reports them")
    early_stopping_latency_ns: float | None = None
    target_latency_percentile: float | None = None
    effective: dict[str, str] = Field(default_factory=dict, description="LoadGen's effective_* settings")
    errors: list[str] = Field(default_factory=list, max_length=20)
    warnings: list[str] = Field(default_factory=list, max_length=20)
    summary_text: str = Field(default="", max_length=20000)  # mlperf_log_summary.txt
    detail_log: str | None = Field(default=None, max_length=40000)  # mlperf_log_detail.txt where small

    @property
    def headline(self) -> tuple[str, float | None]:
        """The figure MLPerf reports for the scenario: (name, value)."""
        if self.scenario == "SingleStream":
            return "p90_ms", _ms(self.latency_ns.get("p90"))
        if self.scenario == "MultiStream":
            return "p99_ms", _ms(self.latency_ns.get("p99"))
        if self.scenario == "Server":
            return "qps", self.scheduled_qps
        return "samples_per_s", self.samples_per_s


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


class Equivalence(StrictModel):
    """The runtime's outputs on a fixed reference batch against the reference framework's
    for the same weights. ``passed`` False: "fast but wrong", never a winner in a report."""

    reference: str = Field(max_length=300)
    samples: Count64
    top1_agreement: float = Field(ge=0, le=1)
    decisive_samples: Count64 = Field(description="samples whose reference top-2 margin exceeds the tolerance")
    top1_agreement_decisive: float | None = Field(default=None, ge=0, le=1)
    max_abs_err: float = Field(ge=0)
    max_rel_err: float = Field(ge=0, description="max |out - ref| / max |ref|")
    mean_abs_err: float = Field(ge=0)
    tolerance_rel: float = Field(ge=0)
    min_top1_agreement: float = Field(ge=0, le=1)
    passed: bool
    detail: str = Field(default="", max_length=1000)


class Accuracy(StrictModel):
    """Real top-1 on dataset files (present only when they are on the box)."""

    dataset: str = Field(max_length=64)
    samples: Count64
    top1: float = Field(ge=0, le=1)
    note: str = Field(default="", max_length=500)


class CpuEnergy(StrictModel):
    """RAPL (powercap) energy over LoadGen's timed run: the whole CPU package, every process on it."""

    scope: Literal["cpu_package"] = "cpu_package"
    energy_j: float = Field(ge=0)
    power_w: float = Field(ge=0)
    mj_per_inference: float | None = Field(default=None, ge=0)
    inferences_per_j: float | None = Field(default=None, ge=0)
    domains: list[str] = Field(default_factory=list, max_length=64)  # e.g. intel-rapl:0 (package-0)


class InferenceRun(StrictModel):
    """One repeat of an inference job under LoadGen."""

    runtime: str = Field(max_length=64)  # onnxruntime, openvino, litert, torch, tensorrt
    runtime_version: str = Field(max_length=100)
    execution_provider: str = Field(default="", max_length=200)
    model: ModelArtifactInfo
    loadgen: LoadGenSummary
    equivalence: Equivalence
    accuracy: Accuracy | None = None
    cpu_energy: CpuEnergy | None = None
    knobs: dict[str, str] = Field(default_factory=dict)
