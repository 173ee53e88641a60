"""One consistent reading per tick, as immutable values.

Every metric a device cannot report is ``None``, never zero: a CPU-only box has
no GPU power, which is not the same as a GPU drawing 0 W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RailSample:
    """One power rail of the board at one tick (Jetson: INA3221 through hwmon or tegrastats)."""

    name: str  # VDD_IN, VDD_CPU_GPU_CV, VDD_SOC, POM_5V_IN, ...
    source: str  # "hwmon" | "tegrastats"
    power_w: float
    scope: str = "rail"  # "module_input": everything the module draws; "rail": one supply inside it


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one tick, in SI-ish units named in every field."""

    index: int
    util_pct: float | None = None  # NVML: fraction of the period in which any kernel ran
    mem_util_pct: float | None = None  # NVML: fraction of the period the memory controller was busy
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    mem_used_bytes: int | None = None  # whole device, every process
    mem_total_bytes: int | None = None
    process_mem_bytes: int | None = None  # the runner's process tree only
    power_w: float | None = None
    power_scope: str | None = None  # what power_w covers: "gpu_board", "module_input:VDD_IN", ...
    energy_mj: float | None = None  # cumulative hardware counter; None where there is none
    temperature_c: float | None = None
    clock_event_reasons: tuple[str, ...] | None = None  # decoded bitmask; None where unsupported
    # NVML's per-process list: (host pid, used bytes or None, visible in the reader's pid namespace)
    processes: tuple[tuple[int, int | None, bool], ...] | None = None
    # settings that invalidate a comparison when they change (agent/telemetry/validity.py)
    power_limit_w: float | None = None  # enforced limit
    power_limit_default_w: float | None = None
    persistence_mode: bool | None = None
    app_sm_clock_mhz: float | None = None
    app_mem_clock_mhz: float | None = None
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None
    rails: tuple[RailSample, ...] = ()  # Jetson: the module's power rails (the one "GPU" is the module)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """The runner's process tree (root and all descendants, plus pids the caller added)."""

    pids: frozenset[int]
    cpu_pct: float | None  # percent of one core, summed over the tree
    rss_bytes: int | None  # summed resident set sizes (shared pages count once per process)


@dataclass(frozen=True, slots=True)
class HostSample:
    """The whole machine at one tick. CPU percentages are of one core (200 = two cores busy)."""

    busy_cpu_pct: float | None = None  # every process on the machine, since the previous tick
    agent_cpu_pct: float | None = None  # this agent process (its sampler, MQTT and store threads)
    cpu_freq_mhz: float | None = None  # mean current frequency of the CPUs
    load_avg_1m: float | None = None
    governors: tuple[str, ...] | None = None  # fresh ticks only; () where cpufreq is absent
    thermal_throttle_count: int | None = None  # fresh ticks only; summed kernel counters (x86)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything sampled at one tick; ``t`` is ``time.time()`` at the start of the tick."""

    t: float
    gpus: tuple[GpuSample, ...]
    process: ProcessSample | None = None
    host: HostSample | None = None
    # the telemetry's device_state() (Jetson power mode...), read on fresh ticks only
    state: dict[str, Any] | None = None
