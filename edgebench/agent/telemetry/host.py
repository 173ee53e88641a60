"""The host around a job: what else used the CPUs, CPU frequency, governor, thermal throttling.

Read by the sampler for the validity record (agent/telemetry/validity.py).
What it costs per call, measured on this project's 2-vCPU Debian VM
(2026-12-01): ``psutil.cpu_times()`` 14 us, ``time.process_time()`` about
1 us, ``psutil.cpu_freq()`` 114 us (it reads /proc/cpuinfo where the VM has
no cpufreq; one sysfs file per CPU elsewhere, so it grows with the core
count). So the machine-wide CPU time is read every tick, the frequency at
most once a second, and the governors and thermal-throttle counters (one
file per CPU each) only on fresh ticks, i.e. at the window edges.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from edgebench.agent.telemetry.snapshot import HostSample

SYSFS_CPU = Path("/sys/devices/system/cpu")
FREQ_PERIOD_S = 1.0


def _busy_s(times: object) -> float:
    # iowait is idle time, guest time is already inside user
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def read_governors(sysfs: Path = SYSFS_CPU) -> tuple[str, ...]:
    """Distinct cpufreq scaling governors over the CPUs; () where cpufreq is not exposed (many VMs)."""
    seen: list[str] = []
    for path in sorted(sysfs.glob("cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            name = path.read_text().strip()[:64]
        except OSError:
            continue
        if name and name not in seen:
            seen.append(name)
    return tuple(seen)


def read_thermal_throttle_count(sysfs: Path = SYSFS_CPU) -> int | None:
    """Sum of the kernel's per-CPU core and package thermal-throttle counters; None where absent."""
    total = 0
    found = False
    for path in sysfs.glob("cpu[0-9]*/thermal_throttle/*_throttle_count"):
        try:
            total += int(path.read_text().strip())
            found = True
        except (OSError, ValueError):
            continue
    return total if found else None


def max_cpu_freq_mhz() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    return float(freq.max) if freq is not None and freq.max else None


class HostMeter:
    """Samples the machine; not thread-safe (the sampler thread owns it)."""

    def __init__(self, sysfs: Path = SYSFS_CPU, clock: Callable[[], float] = time.monotonic) -> None:
        self.sysfs = sysfs
        self._clock = clock
        self._last: tuple[float, float, float] | None = None  # (monotonic, busy_s, agent_cpu_s)
        self._freq: tuple[float, float | None] | None = None  # (monotonic, MHz)
        self.logical_cpus = psutil.cpu_count(logical=True) or 1
        self.max_freq_mhz = max_cpu_freq_mhz()

    def _cpu_freq(self, now: float, fresh: bool) -> float | None:
        if fresh or self._freq is None or now - self._freq[0] >= FREQ_PERIOD_S:
            try:
                freq = psutil.cpu_freq()
                mhz = float(freq.current) if freq is not None and freq.current else None
            except (OSError, NotImplementedError, AttributeError):
                mhz = None
            self._freq = (now, mhz)
        return self._freq[1]

    def sample(self, fresh: bool = False) -> HostSample:
        now = self._clock()
        busy = _busy_s(psutil.cpu_times())
        agent = time.process_time()
        busy_pct = agent_pct = None
        if self._last is not None and now > self._last[0]:
            dt = now - self._last[0]
            busy_pct = max(0.0, 100.0 * (busy - self._last[1]) / dt)
            agent_pct = max(0.0, 100.0 * (agent - self._last[2]) / dt)
        self._last = (now, busy, agent)
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        return HostSample(
            busy_cpu_pct=busy_pct,
            agent_cpu_pct=agent_pct,
            cpu_freq_mhz=self._cpu_freq(now, fresh),
            load_avg_1m=load,
            governors=read_governors(self.sysfs) if fresh else None,
            thermal_throttle_count=read_thermal_throttle_count(self.sysfs) if fresh else None,
        )
