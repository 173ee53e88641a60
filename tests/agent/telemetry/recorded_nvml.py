"""A stand-in for the ``pynvml`` module that serves readings recorded on a real GPU.

CI has no GPU. To test what :class:`NvmlTelemetry` itself decides (which
calls it makes on which tick, what it does with the answers), this module
answers the same functions from a recorded trace (tests/fixtures/
nvml_trace_h200.jsonl, an H200 under a bf16 matmul load) at a time the test
controls, and counts the calls. Nothing is invented: gauges are the recorded
tick at or before that time; the energy counter is the recorded counter
interpolated between ticks, as a counter runs between reads.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgebench.agent.telemetry import load_trace


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    pass


class RecordedNvml:
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = 0x02000028

    def __init__(self, trace_path: Path, clock: Callable[[], float]) -> None:
        trace = load_trace(trace_path)
        self.trace = trace
        self.t0 = trace.ticks[0].t
        self.ts = [tick.t - self.t0 for tick in trace.ticks]
        self.devs = [tick.raw["devices"][0] for tick in trace.ticks]
        self.info = trace.inventory[-1]
        self.clock = clock
        self.calls: Counter[str] = Counter()

    @property
    def duration_s(self) -> float:
        return self.ts[-1]

    def _dev(self) -> dict[str, Any]:
        i = max(0, bisect_right(self.ts, self.clock()) - 1)
        return self.devs[min(i, len(self.devs) - 1)]

    def _count(self, name: str) -> None:
        self.calls[name] += 1

    # -- library -------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names throughout
        self._count("nvmlInit")

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._count("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.info.driver or ""

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:  # noqa: N802
        return 13000

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return self.info.name

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self.info.uuid or ""

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:  # noqa: N802
        return int((self.info.power_limit_w or 0) * 1000)

    # -- readings ------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802
        self._count("utilization")
        d = self._dev()
        return SimpleNamespace(gpu=d["util_gpu_pct"], memory=d["util_mem_pct"])

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:  # noqa: N802
        self._count("memory")
        d = self._dev()
        return SimpleNamespace(used=d["mem_used_bytes"], total=d["mem_total_bytes"])

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:  # noqa: N802
        self._count("sm_clock" if kind == self.NVML_CLOCK_SM else "mem_clock")
        d = self._dev()
        return int(d["sm_clock_mhz"] if kind == self.NVML_CLOCK_SM else d["mem_clock_mhz"])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        self._count("power")
        return int(self._dev()["power_mw"])

    def energy_mj_at(self, t: float) -> float:
        """The recorded counter, linear between recorded ticks."""
        ts, es = self.ts, [d["energy_mj"] for d in self.devs]
        if t <= ts[0]:
            return float(es[0])
        if t >= ts[-1]:
            return float(es[-1])
        i = bisect_right(ts, t)
        return es[i - 1] + (es[i] - es[i - 1]) * (t - ts[i - 1]) / (ts[i] - ts[i - 1])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        self._count("energy")
        return int(self.energy_mj_at(self.clock()))

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        self._count("temperature")
        return int(self._dev()["temperature_c"])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:  # noqa: N802
        self._count("reasons")
        return int(self._dev()["clock_event_reasons"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802
        self._count("processes")
        return [SimpleNamespace(pid=row[0], usedGpuMemory=row[1]) for row in self._dev()["processes"] or []]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802
        raise NVMLError_NotSupported("graphics processes: not on this card")
