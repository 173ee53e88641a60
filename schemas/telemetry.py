"""Telemetry summaries computed inside the measured window."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import StrictModel

UTILISATION_MEANING = (
    "GPU utilisation is NVML's 'fraction of the sample period during which one or more "
    "kernels ran', not how busy the SMs were; read it beside SM clock, power and energy."
)


class Stat(StrictModel):
    mean: float
    p50: float
    p95: float
    max: float


class GpuTelemetry(StrictModel):
    index: int
    name: str | None = None
    uuid: str | None = None
    util_pct: Stat | None = None
    mem_util_pct: Stat | None = None
    sm_clock_mhz: Stat | None = None
    mem_clock_mhz: Stat | None = None
    power_w: Stat | None = None
    temperature_c: Stat | None = None
    mem_used_bytes_peak: int | None = None
    process_mem_bytes_peak: int | None = None
    energy_j: float | None = None
    energy_source: Literal["counter", "power_integral"] | None = None
    throttle_reasons: list[str] = Field(default_factory=list)


class TelemetrySummary(StrictModel):
    source: Literal["nvml", "jetson", "none"]
    interval_s: float
    window_s: float
    samples: int
    gpus: list[GpuTelemetry] = Field(default_factory=list)
    cpu_pct: Stat | None = None  # runner process tree, percent of one core
    rss_bytes_peak: int | None = None
    energy_j: float | None = None
    energy_j_per_epoch: float | None = None
    img_per_j: float | None = None
    memory_policy: str | None = None
    utilisation_meaning: str = UTILISATION_MEANING


class TimeSeries(StrictModel):
    """Compact column-oriented series sampled over the whole job."""

    t_s: list[float]
    columns: dict[str, list[float | None]]
    window: tuple[float, float] | None = None
