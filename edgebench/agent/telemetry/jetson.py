"""NVIDIA Jetson (integrated GPU) through ``tegrastats`` and the board's power monitors.

NVML on a Jetson iGPU reports little (no utilisation, no power: zeus#103), so
the readings come from ``tegrastats --interval N``, run as a child process
whose newest line is parsed each tick, and from the INA3221 power monitors in
sysfs (:mod:`agent.telemetry.hwmon`), read at each tick. Either alone is
enough: an agent container without tegrastats still reads the rails.
:func:`parse_tegrastats_line` is pure and is tested on real lines from several
modules (tests/fixtures/tegrastats_*.txt).

Line format (NVIDIA Jetson Linux "tegrastats Utility"), fields in any order,
absent when the module lacks the engine::

    [MM-DD-YYYY HH:MM:SS] RAM used/totalMB (lfb NxSIZE) SWAP used/totalMB (cached NMB)
    CPU [load%@MHz,...|off] EMC_FREQ load%[@MHz] GR3D_FREQ load%@MHz | load%@[MHz,MHz] | @[MHz,...]
    ... name@tempC ... RAIL current[mW]/average[mW] ...

Units: RAM in MB (MiB), clocks in MHz, rails in mW (newer releases print the
``mW`` suffix, JetPack 4 does not). GR3D_FREQ's load is relative to the
current GPU frequency; on Thor (L4T R38) it prints no load at all, which
becomes ``None``. A temperature of -256 C marks a powered-down sensor.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from edgebench.agent.telemetry import hwmon, jetson_power
from edgebench.agent.telemetry.base import RawReading, Source, Telemetry, TelemetryUnavailable
from edgebench.agent.telemetry.snapshot import GpuSample, RailSample
from edgebench.schemas.status import GpuInfo

log = logging.getLogger(__name__)

MIB = 1024 * 1024

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CPU_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[([\d,]*)\]|@(\d+))?")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?![\w/])")

# Rails that measure what enters the module: the whole board's power draw.
MODULE_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
# Rails that feed the GPU alone (or GPU + SoC on AGX Orin); VDD_CPU_GPU_CV is shared with the CPU.
GPU_RAILS = ("VDD_GPU", "VDD_GPU_SOC", "POM_5V_GPU", "VDD_SYS_GPU")
# Sensor names in order of preference for "GPU temperature"; tj is the SoC's hottest point.
GPU_TEMP_SENSORS = ("gpu", "GPU", "tj")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC"}
_SENSOR_OFF_C = -256.0


@dataclass(frozen=True, slots=True)
class Rail:
    current_mw: int
    average_mw: int


@dataclass(frozen=True, slots=True)
class TegrastatsReading:
    """One parsed tegrastats line."""

    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    cpu_load_pct: tuple[float | None, ...] = ()  # None for a core that is off
    emc_util_pct: float | None = None
    emc_freq_mhz: float | None = None
    gpu_util_pct: float | None = None
    gpu_freq_mhz: float | None = None  # highest of the per-GPC frequencies
    temperatures_c: dict[str, float] = field(default_factory=dict)
    rails: dict[str, Rail] = field(default_factory=dict)

    @property
    def total_power_mw(self) -> int | None:
        """Module input power, or the sum of all rails where the module has no input rail."""
        for name in MODULE_INPUT_RAILS:
            if name in self.rails:
                return self.rails[name].current_mw
        if not self.rails:
            return None
        return sum(r.current_mw for r in self.rails.values())

    @property
    def power_scope(self) -> str | None:
        for name in MODULE_INPUT_RAILS:
            if name in self.rails:
                return f"module_input:{name}"
        if not self.rails:
            return None
        return "sum_of_rails:" + "+".join(self.rails)

    @property
    def gpu_power_mw(self) -> int | None:
        for name in GPU_RAILS:
            if name in self.rails:
                return self.rails[name].current_mw
        return None

    @property
    def gpu_temperature_c(self) -> float | None:
        for name in GPU_TEMP_SENSORS:
            value = self.temperatures_c.get(name)
            if value is not None and value > _SENSOR_OFF_C:
                return value
        return None


def parse_tegrastats_line(line: str) -> TegrastatsReading:
    """Parse one line of ``tegrastats`` output; fields it lacks are ``None``."""
    ram = _RAM.search(line)
    swap = _SWAP.search(line)
    cpu = _CPU.search(line)
    loads: list[float | None] = []
    if cpu:
        for part in cpu.group(1).split(","):
            core = _CPU_CORE.search(part)
            loads.append(float(core.group(1)) if core else None)
    emc = _EMC.search(line)
    gr3d = _GR3D.search(line)
    gpu_util = gpu_freq = None
    if gr3d:
        gpu_util = float(gr3d.group(1)) if gr3d.group(1) is not None else None
        freqs = [int(f) for f in (gr3d.group(2) or "").split(",") if f]
        if gr3d.group(3):
            freqs.append(int(gr3d.group(3)))
        gpu_freq = float(max(freqs)) if freqs else None
    temps = {name: float(value) for name, value in _TEMP.findall(line)}
    rails: dict[str, Rail] = {}
    for name, cur, avg in _RAIL.findall(line):
        if name not in _NOT_RAILS and name not in rails:
            rails[name] = Rail(int(cur), int(avg))
    return TegrastatsReading(
        ram_used_bytes=int(ram.group(1)) * MIB if ram else None,
        ram_total_bytes=int(ram.group(2)) * MIB if ram else None,
        swap_used_bytes=int(swap.group(1)) * MIB if swap else None,
        cpu_load_pct=tuple(loads),
        emc_util_pct=float(emc.group(1)) if emc else None,
        emc_freq_mhz=float(emc.group(2)) if emc and emc.group(2) else None,
        gpu_util_pct=gpu_util,
        gpu_freq_mhz=gpu_freq,
        temperatures_c=temps,
        rails=rails,
    )


def _module_power(rails: dict[str, float]) -> tuple[float | None, str | None]:
    """(watts, scope) of the whole module from rail powers: its input rail, else their sum."""
    for name in MODULE_INPUT_RAILS:
        if name in rails:
            return rails[name], f"module_input:{name}"
    if not rails:
        return None, None
    return sum(rails.values()), "sum_of_rails:" + "+".join(rails)


def sample_from_line(line: str | None, rails_raw: hwmon.RawRails | None = None) -> GpuSample:
    """The Jetson's one iGPU (the module) as a :class:`GpuSample`.

    Memory is unified: "device memory" is system RAM used by everything, and
    there is no per-process GPU memory (None). Power is the module's, not the
    GPU's (``power_scope`` names the rail or rails): the INA3221 reading from
    sysfs when there is one (read at this tick), else tegrastats' (up to one
    tegrastats interval old). There is no energy counter, so the summary
    integrates power. Every rail of both sources is kept in ``rails``.
    """
    r = parse_tegrastats_line(line) if line else TegrastatsReading()
    from_hwmon = {name: w for name, v in (rails_raw or {}).items() if (w := hwmon.rail_power_w(v)) is not None}
    from_tegrastats = {name: rail.current_mw / 1000.0 for name, rail in r.rails.items()}
    power_w, scope = _module_power(from_hwmon) if from_hwmon else _module_power(from_tegrastats)
    rails = tuple(RailSample(name, source, w, "module_input" if name in MODULE_INPUT_RAILS else "rail")
                  for source, readings in (("hwmon", from_hwmon), ("tegrastats", from_tegrastats))
                  for name, w in readings.items())
    return GpuSample(
        index=0,
        util_pct=r.gpu_util_pct,
        mem_util_pct=r.emc_util_pct,
        sm_clock_mhz=r.gpu_freq_mhz,
        mem_clock_mhz=r.emc_freq_mhz,
        mem_used_bytes=r.ram_used_bytes,
        mem_total_bytes=r.ram_total_bytes,
        process_mem_bytes=None,
        power_w=power_w,
        power_scope=scope,
        energy_mj=None,
        temperature_c=r.gpu_temperature_c,
        clock_event_reasons=None,
        rails=rails,
    )


def is_jetson() -> bool:
    """A Jetson module (L4T installed), whatever NVML says."""
    if os.path.exists("/etc/nv_tegra_release"):
        return True
    return "jetson" in device_tree_model().lower()


def device_tree_model() -> str:
    try:
        with open("/proc/device-tree/model", "rb") as fh:
            return fh.read().rstrip(b"\x00").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def l4t_release() -> str | None:
    # First line looks like "# R36 (release), REVISION: 4.4, GCID: ..., BOARD: generic, ..."
    try:
        with open("/etc/nv_tegra_release") as fh:
            first = fh.readline()
    except OSError:
        return None
    m = re.search(r"R(\d+)\b.*?REVISION:\s*([\d.]+)", first)
    return f"L4T R{m.group(1)}.{m.group(2)}" if m else None


class JetsonTelemetry(Telemetry):
    """Reads a long-running ``tegrastats --interval N`` child (its newest line) and
    the INA3221 rails in sysfs at every tick; needs at least one of the two.

    ``tegrastats`` None looks it up on PATH; ``hwmon_root`` is the sysfs
    directory holding the ina3221 drivers (tests point it at a replayed tree;
    None turns the rails off)."""

    def __init__(self, interval_s: float = 0.1, tegrastats: str | None = None,
                 hwmon_root: Path | None = hwmon.I2C_DRIVERS, sys_root: Path = Path("/sys")) -> None:
        self._rails = hwmon.discover_rails(hwmon_root) if hwmon_root is not None else []
        self._sys_root = sys_root
        self._proc: subprocess.Popen[str] | None = None
        self._latest: str | None = None
        self._lock = threading.Lock()
        path = tegrastats or shutil.which("tegrastats")
        if path is None and not self._rails:
            raise TelemetryUnavailable("tegrastats is not on PATH and no INA3221 rails are in sysfs")
        if path is None:
            log.info("tegrastats not on PATH: Jetson telemetry from the INA3221 rails only")
            return
        interval_ms = max(1, round(interval_s * 1000))
        try:
            self._proc = subprocess.Popen(
                [path, "--interval", str(interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            if not self._rails:
                raise TelemetryUnavailable(f"cannot start tegrastats: {exc}") from exc
            log.warning("cannot start tegrastats (%s): Jetson telemetry from the INA3221 rails only", exc)
            return
        stdout = self._proc.stdout
        assert stdout is not None
        self._reader = threading.Thread(target=self._read_lines, args=(stdout,), name="tegrastats", daemon=True)
        self._reader.start()

    @property
    def rails(self) -> list[hwmon.RailFiles]:
        return list(self._rails)

    def device_state(self) -> dict[str, Any]:
        """The nvpmodel mode and the jetson_clocks state, for the validity record (window edges)."""
        return jetson_power.device_state(sys_root=self._sys_root)

    def _read_lines(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.strip()
            if line:
                with self._lock:
                    self._latest = line

    @property
    def source(self) -> Source:
        return "jetson"

    def inventory(self) -> list[GpuInfo]:
        return [
            GpuInfo(
                index=0,
                name=device_tree_model() or "NVIDIA Jetson iGPU",
                uuid=None,
                driver=l4t_release(),
                cuda=None,
                mem_total_bytes=psutil.virtual_memory().total,  # unified memory
                power_limit_w=None,
            )
        ]

    def read_raw(self, indices: Sequence[int] | None = None, *, fresh: bool = False) -> RawReading:
        with self._lock:
            line = self._latest
        raw: RawReading = {"line": line}
        if self._rails:
            raw["hwmon"] = hwmon.read_rails(self._rails)
        return raw

    def convert(self, raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
        return samples_from_raw(raw, pids)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def samples_from_raw(raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
    line: Any = raw.get("line")
    rails: Any = raw.get("hwmon")
    return (sample_from_line(line if isinstance(line, str) else None, rails if isinstance(rails, dict) else None),)
