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

from edgebench.agent.telemetry.base import RawReading, Source, Telemetry, TelemetryUnavailable
from edgebench.agent.telemetry.snapshot import GpuSample
from edgebench.schemas.status import GpuInfo

log = logging.getLogger(__name__)

# Seconds between reads of the slowly changing gauges (process lists,
# temperature, memory clock, clock-event reasons) and of any gauge a read plan
# leaves out of the tick.
SLOW_FIELDS_S = 1.0
# Seconds between reads of the total-energy counter when the plan leaves it out
# of the tick. Window edges read it anyway (fresh reads), so a window's energy
# does not depend on this; the cumulative-energy time series does.
COUNTER_PERIOD_S = 5.0

# Read plans: which NVML readings are taken on every tick. Everything is read
# on a "fresh" read, which the sampler asks for at each window edge.
# Measured on a virtualised 4 x H200 host (driver 580, benchmarks/nvml_call_cost.py,
# docs/TELEMETRY.md): nvmlDeviceGetTotalEnergyConsumption costs 4.4 ms of CPU
# (system time) per call, every other call here 1-40 us. "full" reads the
# counter every tick (4 % of a core at 10 Hz there); "lean" every
# COUNTER_PERIOD_S and at the edges.
TICK_FIELDS = ("utilization", "memory", "sm_clock", "power", "energy")
READ_PLANS: dict[str, frozenset[str]] = {
    "full": frozenset(TICK_FIELDS),
    "lean": frozenset({"utilization", "memory", "sm_clock", "power"}),
}
DEFAULT_READ_PLAN = "lean"

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


def _first(pair: Any) -> Any:
    """The current half of NVML's [current, pending] answers."""
    if isinstance(pair, (list, tuple)):
        return pair[0] if pair else None
    return pair


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _processes(rows: list[list[Any]] | None) -> tuple[tuple[int, int | None, bool], ...] | None:
    if rows is None:
        return None
    return tuple((int(r[0]), None if r[1] is None else int(r[1]), bool(r[2])) for r in rows)


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
        processes=_processes(dev.get("processes")),
        power_limit_w=None if dev.get("power_limit_mw") is None else float(dev["power_limit_mw"]) / 1000.0,
        power_limit_default_w=None if dev.get("power_limit_default_mw") is None
        else float(dev["power_limit_default_mw"]) / 1000.0,
        persistence_mode=_bool(dev.get("persistence_mode")),
        app_sm_clock_mhz=_float(dev.get("app_sm_clock_mhz")),
        app_mem_clock_mhz=_float(dev.get("app_mem_clock_mhz")),
        ecc_enabled=_bool(dev.get("ecc_current")),
        mig_enabled=_bool(dev.get("mig_current")),
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

    def __init__(self, nvml: Any, index: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.unsupported: set[str] = set()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._clock = clock

    def cached(self, key: str, max_age_s: float, read: Callable[[], Any], *, fresh: bool = False) -> Any:
        """A reading that changes slowly, refreshed at most every max_age_s (always when ``fresh``).

        Process lists cost 40 us plus a pid check per process; reading them,
        temperatures and clock-event reasons at 10 Hz on every GPU bought
        nothing: they are read once a second.
        """
        now = self._clock()
        hit = self._cache.get(key)
        if not fresh and hit is not None and now - hit[0] < max_age_s:
            return hit[1]
        value = read()
        self._cache[key] = (now, value)
        return value

    def due(self, key: str, max_age_s: float, *, fresh: bool = False) -> bool:
        """Whether a periodic reading is due now (and, if so, counts as taken)."""
        now = self._clock()
        hit = self._cache.get(key)
        if fresh or hit is None or now - hit[0] >= max_age_s:
            self._cache[key] = (now, None)
            return True
        return False

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

    def __init__(
        self,
        plan: str = DEFAULT_READ_PLAN,
        *,
        nvml: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``nvml`` is the pynvml module (imported when None); tests pass a replay of recorded readings."""
        if plan not in READ_PLANS:
            raise ValueError(f"unknown NVML read plan {plan!r}; known: {', '.join(READ_PLANS)}")
        self.plan = plan
        self._every_tick = READ_PLANS[plan]
        if nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                raise TelemetryUnavailable("nvidia-ml-py (pynvml) is not installed") from exc
            nvml = pynvml
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise TelemetryUnavailable(f"NVML did not initialise: {exc}") from exc
        try:
            count = int(nvml.nvmlDeviceGetCount())
            if count == 0:
                raise TelemetryUnavailable("NVML sees no GPU")
            self._devices = [_Device(nvml, i, clock) for i in range(count)]
        except nvml.NVMLError as exc:
            nvml.nvmlShutdown()
            raise TelemetryUnavailable(f"NVML could not list GPUs: {exc}") from exc
        except TelemetryUnavailable:
            nvml.nvmlShutdown()
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

    def read_raw(self, indices: Sequence[int] | None = None, *, fresh: bool = False) -> RawReading:
        wanted = None if indices is None else set(indices)
        return {"devices": [self._read_device(d, fresh) for d in self._devices if wanted is None or d.index in wanted]}

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

    def _read_device(self, dev: _Device, fresh: bool) -> dict[str, Any]:
        nvml = self._nvml
        every_tick = self._every_tick

        def gauge(field: str, read: Callable[[], Any]) -> Any:
            # A gauge not read on this tick repeats its last reading (at most
            # SLOW_FIELDS_S old), as a monitoring scrape would see it.
            if field in every_tick:
                return read()
            return dev.cached(field, SLOW_FIELDS_S, read, fresh=fresh)

        def counter(field: str, read: Callable[[], Any]) -> Any:
            # A counter not read on this tick is None, never repeated: a repeated
            # value stamped with a later time would bend the interpolation at
            # window edges (summary.window_energy_j).
            if field in every_tick or dev.due(field, COUNTER_PERIOD_S, fresh=fresh):
                return read()
            return None

        util = gauge("utilization", lambda: dev.query("utilization", nvml.nvmlDeviceGetUtilizationRates))
        mem = gauge("memory", lambda: self._memory(dev))
        return {
            "index": dev.index,
            "util_gpu_pct": None if util is None else util.gpu,
            "util_mem_pct": None if util is None else util.memory,
            "sm_clock_mhz": gauge(
                "sm_clock", lambda: dev.query("sm_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM)
            ),
            "mem_clock_mhz": gauge(
                "mem_clock", lambda: dev.query("mem_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM)
            ),
            "mem_used_bytes": None if mem is None else int(mem.used),
            "mem_total_bytes": None if mem is None else int(mem.total),
            "power_mw": gauge("power", lambda: dev.query("power", nvml.nvmlDeviceGetPowerUsage)),
            "energy_mj": counter("energy", lambda: dev.query("energy", nvml.nvmlDeviceGetTotalEnergyConsumption)),
            "temperature_c": gauge(
                "temperature",
                lambda: dev.query("temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
            ),
            "clock_event_reasons": gauge("reasons", lambda: self._clock_event_reasons(dev)),
            "processes": gauge("processes", lambda: self._processes(dev)),
            "power_limit_mw": gauge("power_limit", lambda: self._optional(dev, "power_limit",
                                                                          "nvmlDeviceGetEnforcedPowerLimit")),
            **dev.cached("config", SLOW_FIELDS_S, lambda: self._config(dev), fresh=fresh),
        }

    def _optional(self, dev: _Device, key: str, name: str, *args: Any) -> Any:
        """A query of an NVML function this pynvml (or driver) may not have."""
        func = getattr(self._nvml, name, None)
        return None if func is None else dev.query(key, func, *args)

    def _config(self, dev: _Device) -> dict[str, Any]:
        """Settings that change a measurement when someone changes them (the validity record):
        persistence mode, application clocks, ECC and MIG modes, the default power limit.
        About 5-20 us per call; read with the slow gauges and at every window edge."""
        nvml = self._nvml
        ecc = self._optional(dev, "ecc_mode", "nvmlDeviceGetEccMode")
        mig = self._optional(dev, "mig_mode", "nvmlDeviceGetMigMode")
        return {
            "power_limit_default_mw": self._optional(dev, "power_limit_default",
                                                     "nvmlDeviceGetPowerManagementDefaultLimit"),
            "persistence_mode": self._optional(dev, "persistence_mode", "nvmlDeviceGetPersistenceMode"),
            "app_sm_clock_mhz": self._optional(dev, "app_sm_clock", "nvmlDeviceGetApplicationsClock",
                                               getattr(nvml, "NVML_CLOCK_SM", 1)),
            "app_mem_clock_mhz": self._optional(dev, "app_mem_clock", "nvmlDeviceGetApplicationsClock",
                                                getattr(nvml, "NVML_CLOCK_MEM", 2)),
            # both answer [current, pending]
            "ecc_current": _first(ecc),
            "mig_current": _first(mig),
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
