"""Telemetry summaries computed inside the measured window."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgebench.schemas.base import Count32, Count64, StrictModel
from edgebench.schemas.validity import Validity

UTILISATION_MEANING = (
    "GPU utilisation is NVML's 'fraction of the sample period during which one or more "
    "kernels ran', not how busy the SMs were; read it beside SM clock, power and energy."
)


class Stat(StrictModel):
    """Over the samples inside the measured window(s); p50/p95 interpolate linearly."""

    mean: float
    p50: float
    p95: float
    max: float


class GpuTelemetry(StrictModel):
    """One GPU over the measured window(s). Read util_pct beside sm_clock_mhz, power_w
    and energy_j (see UTILISATION_MEANING); a metric the device cannot report is None."""

    index: Count32
    name: str | None = None
    uuid: str | None = None
    # What NVML calls utilisation says little alone: SM clock, power and energy sit beside it.
    util_pct: Stat | None = None
    sm_clock_mhz: Stat | None = None
    power_w: Stat | None = None
    power_scope: str | None = Field(
        default=None,
        description="What power_w and energy_j cover: 'gpu_board' (NVML), "
        "'module_input:VDD_IN' or 'sum_of_rails:...' (Jetson).",
    )
    energy_j: float | None = None
    energy_source: Literal["counter", "power_integral"] | None = None
    mem_util_pct: Stat | None = None
    mem_clock_mhz: Stat | None = None
    temperature_c: Stat | None = None
    mem_used_bytes_peak: Count64 | None = None  # whole device, every process
    process_mem_bytes_peak: Count64 | None = None  # the runner's process tree
    throttle_reasons: list[str] = Field(
        default_factory=list, description="Clock event reasons seen in the window, most frequent first."
    )
    clock_event_fractions: dict[str, float] = Field(
        default_factory=dict, description="Fraction of in-window samples in which each reason was active."
    )


class RailEnergy(StrictModel):
    """One power rail of the board over the measured window(s): Jetson's INA3221
    monitors, read through sysfs (``hwmon``) or as tegrastats prints them.

    ``scope`` says what the rail covers: ``module_input`` is everything the
    module draws (VDD_IN, POM_5V_IN), ``rail`` one supply inside it
    (VDD_CPU_GPU_CV feeds CPU, GPU and CV engines together: it is not GPU
    power either). Energy is the trapezoid integral of the rail's power."""

    name: str = Field(max_length=64)
    source: Literal["hwmon", "tegrastats"]
    scope: Literal["module_input", "rail"]
    samples: int = Field(ge=0)  # in-window samples with this rail
    power_w: Stat | None = None
    energy_j: float | None = None
    energy_j_per_epoch: float | None = None
    img_per_j: float | None = None
    energy_mj_per_image: float | None = Field(
        default=None, description="mJ per image (in infer mode: per inference) inside the window(s)")


class TelemetrySummary(StrictModel):
    source: Literal["nvml", "jetson", "none"]
    interval_s: float
    window_s: float  # summed length of the measured windows
    window_count: Count32 = 1
    samples: Count64  # samples inside the windows
    gpus: list[GpuTelemetry] = Field(default_factory=list)
    cpu_pct: Stat | None = None  # runner process tree, percent of one core
    rss_bytes_peak: Count64 | None = None  # runner process tree, summed RSS
    energy_j: float | None = None  # all GPUs, inside the windows
    energy_j_per_epoch: float | None = None
    img_per_j: float | None = None
    energy_mj_per_image: float | None = Field(
        default=None, description="mJ per image (in infer mode: per inference), from energy_j")
    energy_scope: str | None = Field(
        default=None, description="What energy_j covers: 'gpu_board' (NVML, summed over the GPUs), "
        "'module_input:VDD_IN' (a Jetson's whole module, not its GPU alone), 'sum_of_rails:...'.")
    rails: list[RailEnergy] = Field(
        default_factory=list, description="Jetson: every power rail of the board, per source (hwmon, tegrastats).")
    memory_policy: str | None = None
    utilisation_meaning: str = UTILISATION_MEANING
    validity: Validity | None = Field(
        default=None, description="What could invalidate this measurement, and the verdict (absent in results "
        "from before it was recorded)")


class TimeSeries(StrictModel):
    """Compact column-oriented series sampled over the whole job.

    ``t_s`` is seconds since the first sample (``t0_unix_s``); columns are named
    ``gpu<i>_<metric>_<unit>``, ``cpu_pct`` and ``rss_mib``. ``window`` spans the
    first begin to the last end; ``windows`` lists every measured window.
    """

    t_s: list[float]
    columns: dict[str, list[float | None]]
    window: tuple[float, float] | None = None
    windows: list[tuple[float, float]] = Field(default_factory=list)
    t0_unix_s: float | None = None
