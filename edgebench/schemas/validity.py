"""What could invalidate a measurement, recorded inside its measured window.

The agent's sampler fills it (edgebench/agent/telemetry/validity.py); it
travels in ``TelemetrySummary.validity`` and ends in a verdict: ``valid``, or
``suspect`` with the reasons. ``notes`` are conditions worth knowing that do
not make a result suspect on their own (a power-capped card at its default
limit, a CPU governor that is not ``performance``). docs/TELEMETRY.md lists
every check and its threshold.

Every string here comes from a device: bounded, and never rendered as markup.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from edgebench.schemas.base import StrictModel

Verdict = Literal["valid", "suspect"]

_TEXT = 300  # one reason or note, a governor name, a mode name
Text = Annotated[str, StringConstraints(max_length=_TEXT)]


class GpuValidity(StrictModel):
    """One GPU of the job over its measured window(s); None where the device cannot say."""

    index: int = Field(ge=0, le=1024)
    clock_events_seen: list[Text] = Field(default_factory=list, max_length=32,
                                         description="NVML clock-event (throttle) reasons active in the window")
    sm_clock_mhz_min: float | None = Field(default=None, ge=0)
    sm_clock_mhz_median: float | None = Field(default=None, ge=0)
    power_limit_w_min: float | None = Field(default=None, ge=0, description="enforced limit, lowest in the window")
    power_limit_w_max: float | None = Field(default=None, ge=0)
    power_limit_default_w: float | None = Field(default=None, ge=0)
    other_processes: list[int] = Field(default_factory=list, max_length=256,
                                       description="pids on this GPU outside the runner's process tree")
    other_processes_mem_bytes_peak: int | None = Field(default=None, ge=0)
    processes_visible: bool | None = Field(
        default=None, description="False when NVML listed pids the agent cannot see (another pid namespace)")
    persistence_mode: bool | None = None
    applications_clock_sm_mhz: float | None = Field(default=None, ge=0)
    applications_clock_mem_mhz: float | None = Field(default=None, ge=0)
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None


class HostValidity(StrictModel):
    """The host over the measured window(s)."""

    logical_cpus: int | None = Field(default=None, ge=1, le=65536)
    cpu_governors: list[Text] = Field(default_factory=list, max_length=16,
                                     description="distinct cpufreq scaling governors seen (every CPU)")
    cpu_freq_mhz_min: float | None = Field(default=None, ge=0)
    cpu_freq_mhz_median: float | None = Field(default=None, ge=0)
    cpu_freq_mhz_max_hw: float | None = Field(default=None, ge=0, description="the CPUs' highest rated frequency")
    cpu_thermal_throttle_events: int | None = Field(
        default=None, ge=0, description="kernel thermal_throttle counters' increase over the window (x86)")
    other_cpu_pct_mean: float | None = Field(
        default=None, ge=0, description="CPU busy outside the runner's tree and the agent, % of one core")
    other_cpu_pct_p95: float | None = Field(default=None, ge=0)
    load_avg_1m_max: float | None = Field(default=None, ge=0)


class JetsonValidity(StrictModel):
    """Jetson power state (readers in edgebench/agent/telemetry/jetson.py and its sensor modules)."""

    nvpmodel_mode: Text | None = None
    nvpmodel_changed: bool | None = Field(default=None, description="the mode differed between window edges")
    jetson_clocks: bool | None = Field(default=None, description="clocks pinned at their maximum")


class Validity(StrictModel):
    verdict: Verdict
    reasons: list[Text] = Field(default_factory=list, max_length=64,
                               description="why the result is suspect (empty when valid)")
    notes: list[Text] = Field(default_factory=list, max_length=64)
    gpus: list[GpuValidity] = Field(default_factory=list, max_length=64)
    host: HostValidity | None = None
    jetson: JetsonValidity | None = None
