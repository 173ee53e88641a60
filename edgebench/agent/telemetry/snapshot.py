"""One consistent reading per tick, as immutable values.

Every metric a device cannot report is ``None``, never zero: a CPU-only box has
no GPU power, which is not the same as a GPU drawing 0 W.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """The runner's process tree (root and all descendants, plus pids the caller added)."""

    pids: frozenset[int]
    cpu_pct: float | None  # percent of one core, summed over the tree
    rss_bytes: int | None  # summed resident set sizes (shared pages count once per process)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything sampled at one tick; ``t`` is ``time.time()`` at the start of the tick."""

    t: float
    gpus: tuple[GpuSample, ...]
    process: ProcessSample | None = None
