"""Jetson power state, read: the nvpmodel power mode and whether jetson_clocks pinned
the clocks (for the fingerprint, the validity record's window edges and the
power_mode knob in agent/power_mode.py, which also sets the mode).

Formats (JetPack 4 to 6, and jetson_stats' emulators of them):

- ``nvpmodel -q``: optional ``NVPM WARN: ...`` lines, then ``NV Power Mode: MAXN``
  and the mode id alone on the next line.
- ``/var/lib/nvpmodel/status``: ``pmode:0002`` (optionally ``fmode:quiet``), the
  mode nvpmodel last set; ``/etc/nvpmodel.conf`` names the ids
  (``< POWER_MODEL ID=2 NAME=MAXN_SUPER >``). Both are plain files: no root and
  no binary needed, which is what an agent container with them mounted reads.
- ``nvpmodel -m N`` for a mode that changes the number of online CPU cores (or
  the GPU's power-gating mask) prints ``NVPM WARN: Reboot required for changing
  to this power mode: N`` and asks ``DO YOU WANT TO REBOOT NOW? enter YES/yes``.
  The caller answers no (stdin): the mode was not applied.
- ``jetson_clocks --show`` (root): one ``cpuN: Online=1 ... MinFreq=kHz
  MaxFreq=kHz CurrentFreq=kHz`` line per core, ``GPU MinFreq=Hz MaxFreq=Hz
  CurrentFreq=Hz``, ``EMC ... FreqOverride=0|1``. jetson_clocks pins a clock by
  raising its floor to its ceiling, so "on" reads as MinFreq == MaxFreq, which
  sysfs shows without root (devfreq min_freq/max_freq, cpufreq scaling_min/max_freq).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebench.schemas.power import JetsonClocks, PowerMode

log = logging.getLogger(__name__)

NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")

_QUERY_NAME = re.compile(r"^NV Power Mode:\s*(\S.*?)\s*$")
_STATUS = re.compile(r"\bpmode:(\d+)")
_CONF_MODE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")
_REBOOT = re.compile(r"reboot required", re.IGNORECASE)
_FREQ = re.compile(r"\b(MinFreq|MaxFreq|CurrentFreq|FreqOverride|Online)=(\d+)")
# devfreq names of the Jetson iGPUs: 57000000.gpu (Nano, TX1), 17000000.gp10b (TX2), .gv11b (Xavier),
# .ga10b (Orin on JetPack 5), 17000000.gpu (Orin on JetPack 6)
_GPU_DEVFREQ = re.compile(r"\.(gpu|gm20b|gp10b|gv11b|ga10b|gb10b)$")


class PowerModeError(Exception):
    """The requested power mode cannot be set here (not allowed, no nvpmodel, needs a reboot)."""


# -- parsing (pure) ------------------------------------------------------------------
def parse_nvpmodel_query(text: str) -> PowerMode | None:
    """``nvpmodel -q`` output -> the mode, or None when it names none."""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        m = _QUERY_NAME.match(line)
        if not m:
            continue
        following = next((nxt for nxt in lines[i + 1:] if nxt), "")
        return PowerMode(id=int(following), name=m.group(1)[:64]) if following.isdigit() else None
    return None


def parse_status_file(text: str) -> int | None:
    """``/var/lib/nvpmodel/status`` ("pmode:0002 fmode:quiet") -> 2."""
    m = _STATUS.search(text)
    return int(m.group(1)) if m else None


def parse_nvpmodel_conf(text: str) -> dict[int, str]:
    """``/etc/nvpmodel.conf`` -> {mode id: name}."""
    return {int(i): name for i, name in _CONF_MODE.findall(text)}


def parse_jetson_clocks(text: str) -> JetsonClocks | None:
    """``jetson_clocks --show`` -> whether the clocks are pinned, or None when it has no GPU line."""
    cpu_locked: list[bool] = []
    gpu: dict[str, int] = {}
    emc_override: bool | None = None
    for line in text.splitlines():
        line = line.strip()
        values = {k: int(v) for k, v in _FREQ.findall(line)}
        if re.match(r"cpu\d+:", line) and values.get("Online", 1) == 1 and "MinFreq" in values:
            cpu_locked.append(values["MinFreq"] == values.get("MaxFreq"))
        elif line.startswith("GPU ") and "MinFreq" in values:
            gpu = values
        elif line.startswith("EMC ") and "FreqOverride" in values:
            emc_override = values["FreqOverride"] == 1
    if not gpu:
        return None
    gpu_locked = gpu["MinFreq"] == gpu.get("MaxFreq")
    cpus = all(cpu_locked) if cpu_locked else None

    def mhz(key: str) -> float | None:
        return gpu[key] / 1e6 if key in gpu else None

    return JetsonClocks(
        locked=gpu_locked and cpus is not False,
        gpu_min_mhz=mhz("MinFreq"), gpu_max_mhz=mhz("MaxFreq"), gpu_cur_mhz=mhz("CurrentFreq"),
        cpu_locked=cpus, emc_override=emc_override,
    )


# -- reading and setting ----------------------------------------------------------------
@dataclass
class PowerModeControl:
    """Where the tools and files are; tests point these at stand-ins."""

    nvpmodel: str = "nvpmodel"
    jetson_clocks: str = "jetson_clocks"
    status_file: Path = NVPMODEL_STATUS
    conf_file: Path = NVPMODEL_CONF
    timeout_s: float = 60.0  # nvpmodel -m re-clocks the board; seconds on a Nano

    def _which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def read(self, prefer_file: bool = False) -> tuple[PowerMode, str] | None:
        """The mode in force and where it was read ("nvpmodel" or "status_file"), or None.

        ``nvpmodel -q`` (no root needed) where the binary is, else two small
        files (an agent container with them mounted). ``prefer_file`` reads the
        files first: nvpmodel writes the status file whenever it sets a mode,
        and reading it costs no process (a window edge)."""
        if prefer_file:
            found = self._read_files()
            if found is not None:
                return found
        path = self._which(self.nvpmodel)
        if path is not None:
            try:
                out = subprocess.run([path, "-q"], capture_output=True, text=True, timeout=10,
                                     stdin=subprocess.DEVNULL)
                mode = parse_nvpmodel_query(out.stdout)
                if mode is not None:
                    return mode, "nvpmodel"
            except (OSError, subprocess.SubprocessError) as exc:
                log.debug("nvpmodel -q failed: %s", exc)
        return None if prefer_file else self._read_files()

    def _read_files(self) -> tuple[PowerMode, str] | None:
        try:
            mode_id = parse_status_file(self.status_file.read_text())
        except OSError:
            return None
        if mode_id is None:
            return None
        try:
            name = parse_nvpmodel_conf(self.conf_file.read_text()).get(mode_id)
        except OSError:
            name = None
        return PowerMode(id=mode_id, name=name), "status_file"

    def read_clocks(self) -> JetsonClocks | None:
        path = self._which(self.jetson_clocks)
        if path is None:
            return None
        try:
            out = subprocess.run([path, "--show"], capture_output=True, text=True, timeout=20,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return parse_jetson_clocks(out.stdout) if out.returncode == 0 else None

    def set(self, mode_id: int) -> None:
        """``nvpmodel -m ID``; raises PowerModeError unless the board is in that mode after."""
        path = self._which(self.nvpmodel)
        if path is None:
            raise PowerModeError(f"power_mode {mode_id} asked for, but nvpmodel is not on this agent's PATH")
        try:
            # "no" answers the reboot prompt of a mode that changes the online cores
            out = subprocess.run([path, "-m", str(mode_id)], input="no\n", capture_output=True, text=True,
                                 timeout=self.timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PowerModeError(f"nvpmodel -m {mode_id} failed: {exc}") from exc
        text = f"{out.stdout}\n{out.stderr}"
        if _REBOOT.search(text):
            raise PowerModeError(f"power mode {mode_id} needs a reboot on this module (nvpmodel: "
                                 "'Reboot required'); it was not applied")
        now = self.read()
        if out.returncode != 0 or now is None or now[0].id != mode_id:
            detail = text.strip().splitlines()[-1:] or ["no output"]
            raise PowerModeError(f"nvpmodel -m {mode_id} did not take effect (exit {out.returncode}, now "
                                 f"{now[0].id if now else 'unknown'}): {detail[0][:300]}")


def clocks_pinned(sys_root: Path = Path("/sys")) -> bool | None:
    """Whether jetson_clocks has pinned the clocks, from sysfs alone (no root, no process):
    the iGPU's devfreq floor at its ceiling and every online CPU's cpufreq floor at its
    ceiling, which is what ``jetson_clocks`` sets. None where no Jetson iGPU devfreq is found."""
    gpus = [d for d in sorted((sys_root / "class" / "devfreq").glob("*")) if _GPU_DEVFREQ.search(d.name)]
    try:
        gpu = next((d for d in gpus if (d / "min_freq").is_file()), None)
        if gpu is None:
            return None
        if (gpu / "min_freq").read_text().strip() != (gpu / "max_freq").read_text().strip():
            return False
        for cpufreq in sorted((sys_root / "devices" / "system" / "cpu").glob("cpu[0-9]*/cpufreq")):
            if (cpufreq / "scaling_min_freq").read_text().strip() != \
                    (cpufreq / "scaling_max_freq").read_text().strip():
                return False
    except OSError:
        return None
    return True


def device_state(control: PowerModeControl | None = None, sys_root: Path = Path("/sys")) -> dict[str, object]:
    """What the validity record reads at each window edge (Telemetry.device_state): the
    nvpmodel mode as "NAME (id)" and whether the clocks are pinned; keys left out where unknown."""
    state: dict[str, object] = {}
    found = (control or PowerModeControl()).read(prefer_file=True)
    if found is not None:
        mode = found[0]
        state["nvpmodel_mode"] = f"{mode.name or '?'} ({mode.id})"
    pinned = clocks_pinned(sys_root)
    if pinned is not None:
        state["jetson_clocks"] = pinned
    return state


def read_power_mode(control: PowerModeControl | None = None) -> PowerMode | None:
    """The nvpmodel mode in force now, or None off a Jetson (the validity record's reader)."""
    found = (control or PowerModeControl()).read()
    return found[0] if found else None
