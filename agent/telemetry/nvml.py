"""NVIDIA GPUs through NVML (the nvidia-ml-py package, module ``pynvml``).

Every NVML call goes through :meth:`_Device.query`, which turns "not supported",
"no permission" and friends into ``None`` (the nvitop ``nvmlQuery`` habit), so
one missing metric never costs the others. A metric that answered
NotSupported once is not asked again: on a given device and driver it will
not start working mid-job, and asking costs time every tick.

Raw readings keep NVML's own units (mW, mJ, bytes, MHz, %); :func:`samples_from_raw`
converts them and is pure, so recorded traces replay through the same code
that runs on a real GPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psutil

from agent.telemetry.base import RawReading, Source, Telemetry, TelemetryUnavailable
from agent.telemetry.snapshot import GpuSample
from schemas.status import GpuInfo

log = logging.getLogger(__name__)

# Seconds between reads of slowly changing fields (process lists, temperature,
# memory clock, clock-event reasons); utilisation, SM clock, memory used,
# power and energy are read every tick.
SLOW_FIELDS_S = 1.0

# nvmlClocksEventReason* bits (nvml.h; the older name is "throttle reasons").
# Fixed by NVIDIA's ABI, written out so that replaying a trace needs no NVML.
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)


def decode_clock_event_reasons(mask: int | None) -> tuple[str, ...] | None:
    """Bitmask from nvmlDeviceGetCurrentClocksEventReasons -> names; unknown bits as hex."""
    if mask is None:
        return None
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    known = 0
    for bit, _ in CLOCK_EVENT_REASONS:
        known |= bit
    if mask & ~known:
        names.append(f"unknown_0x{mask & ~known:x}")
    return tuple(names)


def process_tree_memory(processes: list[list[Any]] | None, pids: Iterable[int]) -> int | None:
    """GPU memory held by the runner's processes, from NVML's per-process list.

    ``processes`` rows are ``[pid, used_bytes or None, visible]`` where
    ``visible`` says whether that pid existed in the reader's pid namespace.
    NVML reports host pids: inside a container without ``--pid=host`` they
    match nothing of ours, and a plain 0 would be a lie, so a list holding
    pids we cannot see gives ``None`` unless some of ours matched.
    """
    if processes is None:
        return None
    wanted = set(pids)
    matched = [row for row in processes if row[0] in wanted]
    if matched:
        known = [row[1] for row in matched if row[1] is not None]
        return sum(known) if known else None
    if any(not row[2] for row in processes):
        return None
    return 0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def sample_from_raw(dev: dict[str, Any], pids: Iterable[int] = ()) -> GpuSample:
    """One device's raw NVML values -> :class:`GpuSample` (mW -> W; mask -> names)."""
    power_mw = dev.get("power_mw")
    return GpuSample(
        index=int(dev["index"]),
        util_pct=_float(dev.get("util_gpu_pct")),
        mem_util_pct=_float(dev.get("util_mem_pct")),
        sm_clock_mhz=_float(dev.get("sm_clock_mhz")),
        mem_clock_mhz=_float(dev.get("mem_clock_mhz")),
        mem_used_bytes=_int(dev.get("mem_used_bytes")),
        mem_total_bytes=_int(dev.get("mem_total_bytes")),
        process_mem_bytes=process_tree_memory(dev.get("processes"), pids),
        power_w=None if power_mw is None else float(power_mw) / 1000.0,
        power_scope=None if power_mw is None else "gpu_board",
        energy_mj=_float(dev.get("energy_mj")),
        temperature_c=_float(dev.get("temperature_c")),
        clock_event_reasons=decode_clock_event_reasons(dev.get("clock_event_reasons")),
    )


def samples_from_raw(raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
    pid_set = frozenset(pids)
    return tuple(sample_from_raw(dev, pid_set) for dev in raw.get("devices", []))


def _cuda_version_string(version: int | None) -> str | None:
    # nvmlSystemGetCudaDriverVersion gives 12040 for CUDA 12.4.
    if version is None:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _Device:
    """One NVML handle plus the set of calls that answered NotSupported."""

    def __init__(self, nvml: Any, index: int) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.unsupported: set[str] = set()
        self._cache: dict[str, tuple[float, Any]] = {}

    def cached(self, key: str, max_age_s: float, read: Callable[[], Any]) -> Any:
        """A reading that changes slowly, refreshed at most every max_age_s.

        Each NVML call costs about a millisecond of CPU on some hosts (seen on a
        virtualised 4 x H200 machine): asking for process lists, temperatures
        and clock-event reasons at 10 Hz on every GPU made the sampler cost 16 %
        of a core. They are read once a second instead.
        """
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < max_age_s:
            return hit[1]
        value = read()
        self._cache[key] = (now, value)
        return value

    def query(self, key: str, func: Callable[..., Any], *args: Any) -> Any:
        if key in self.unsupported:
            return None
        try:
            return _text(func(self.handle, *args))
        except self.nvml.NVMLError as exc:
            # NotSupported and FunctionNotFound are permanent for this device and
            # driver; NoPermission too for this process. Anything else (GPU lost,
            # timeout, unknown) may pass, so it is asked again next tick.
            if isinstance(exc, _permanent_errors(self.nvml)):
                self.unsupported.add(key)
            else:
                log.debug("NVML %s on GPU %d failed: %s", key, self.index, exc)
            return None


def _permanent_errors(nvml: Any) -> tuple[type[BaseException], ...]:
    names = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")
    return tuple(getattr(nvml, n) for n in names if hasattr(nvml, n))


class NvmlTelemetry(Telemetry):
    """Live NVML readings; raises :class:`TelemetryUnavailable` without a driver or GPU."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise TelemetryUnavailable("nvidia-ml-py (pynvml) is not installed") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise TelemetryUnavailable(f"NVML did not initialise: {exc}") from exc
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            if count == 0:
                raise TelemetryUnavailable("NVML sees no GPU")
            self._devices = [_Device(pynvml, i) for i in range(count)]
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise TelemetryUnavailable(f"NVML could not list GPUs: {exc}") from exc
        except TelemetryUnavailable:
            pynvml.nvmlShutdown()
            raise
        self._closed = False

    @property
    def source(self) -> Source:
        return "nvml"

    def inventory(self) -> list[GpuInfo]:
        nvml = self._nvml
        driver = self._system(nvml.nvmlSystemGetDriverVersion)
        cuda = self._system(getattr(nvml, "nvmlSystemGetCudaDriverVersion_v2", None)) or self._system(
            getattr(nvml, "nvmlSystemGetCudaDriverVersion", None)
        )
        infos = []
        for dev in self._devices:
            mem = dev.query("memory", nvml.nvmlDeviceGetMemoryInfo)
            limit_mw = dev.query("power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
            if limit_mw is None:
                limit_mw = dev.query("power_limit_mgmt", nvml.nvmlDeviceGetPowerManagementLimit)
            infos.append(
                GpuInfo(
                    index=dev.index,
                    name=dev.query("name", nvml.nvmlDeviceGetName) or "unknown NVIDIA GPU",
                    uuid=dev.query("uuid", nvml.nvmlDeviceGetUUID),
                    driver=driver,
                    cuda=_cuda_version_string(cuda),
                    mem_total_bytes=None if mem is None else int(mem.total),
                    power_limit_w=None if limit_mw is None else float(limit_mw) / 1000.0,
                )
            )
        return infos

    def _system(self, func: Callable[[], Any] | None) -> Any:
        if func is None:
            return None
        try:
            return _text(func())
        except self._nvml.NVMLError:
            return None

    def read_raw(self, indices: Sequence[int] | None = None) -> RawReading:
        wanted = None if indices is None else set(indices)
        return {"devices": [self._read_device(d) for d in self._devices if wanted is None or d.index in wanted]}

    def _memory(self, dev: _Device) -> Any:
        # v2 reports "used" without the driver's reserved memory, as nvidia-smi
        # does (v1 counted the reservation: +600 MiB on an H200)
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and "memory_v2" not in dev.unsupported:
            mem = dev.query("memory_v2", nvml.nvmlDeviceGetMemoryInfo, version)
            if mem is not None:
                return mem
        return dev.query("memory", nvml.nvmlDeviceGetMemoryInfo)

    def _clock_event_reasons(self, dev: _Device) -> Any:
        # The "event reasons" name replaced "throttle reasons" in newer NVML; same bits.
        nvml = self._nvml
        reasons = None
        events = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if events is not None:
            reasons = dev.query("clock_events", events)
        if reasons is None:
            reasons = dev.query("clock_throttle", nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        return reasons

    def _read_device(self, dev: _Device) -> dict[str, Any]:
        nvml = self._nvml
        util = dev.query("utilization", nvml.nvmlDeviceGetUtilizationRates)
        mem = self._memory(dev)
        reasons = dev.cached("reasons", SLOW_FIELDS_S, lambda: self._clock_event_reasons(dev))
        return {
            "index": dev.index,
            "util_gpu_pct": None if util is None else util.gpu,
            "util_mem_pct": None if util is None else util.memory,
            "sm_clock_mhz": dev.query("sm_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": dev.cached("mem_clock", SLOW_FIELDS_S, lambda: dev.query(
                "mem_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM)),
            "mem_used_bytes": None if mem is None else int(mem.used),
            "mem_total_bytes": None if mem is None else int(mem.total),
            "power_mw": dev.query("power", nvml.nvmlDeviceGetPowerUsage),
            "energy_mj": dev.query("energy", nvml.nvmlDeviceGetTotalEnergyConsumption),
            "temperature_c": dev.cached("temperature", SLOW_FIELDS_S, lambda: dev.query(
                "temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)),
            "clock_event_reasons": reasons,
            "processes": dev.cached("processes", SLOW_FIELDS_S, lambda: self._processes(dev)),
        }

    def _processes(self, dev: _Device) -> list[list[Any]] | None:
        nvml = self._nvml
        compute = dev.query("compute_procs", nvml.nvmlDeviceGetComputeRunningProcesses)
        graphics = dev.query("graphics_procs", nvml.nvmlDeviceGetGraphicsRunningProcesses)
        if compute is None and graphics is None:
            return None
        used: dict[int, int | None] = {}
        for proc in [*(compute or []), *(graphics or [])]:
            pid = int(proc.pid)
            mem = proc.usedGpuMemory  # None where NVML cannot tell (e.g. some vGPU / MIG setups)
            prev = used.get(pid)
            used[pid] = mem if prev is None else max(prev, mem or 0)
        return [[pid, mem, psutil.pid_exists(pid)] for pid, mem in sorted(used.items())]

    def convert(self, raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
        return samples_from_raw(raw, pids)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
