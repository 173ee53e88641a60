"""Jetson power modes (``nvpmodel``) and clocks (``jetson_clocks``).

Read for every result's fingerprint, and set for a job that asks for a
``power_mode``: :func:`run_in_power_mode` sets the mode before the job,
restores the one that was in force after it, and records in the result what
it saw (before, during, after). An agent does this only when its config says
``allow_power_mode: true``: nvpmodel needs root and changes the whole board
(CPU cores online, clock ceilings, EMC cap), which a site may not want a
benchmark to touch.

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
  The agent answers no (stdin) and fails the job: the mode was not applied.
- ``jetson_clocks --show`` (root): one ``cpuN: Online=1 ... MinFreq=kHz
  MaxFreq=kHz CurrentFreq=kHz`` line per core, ``GPU MinFreq=Hz MaxFreq=Hz
  CurrentFreq=Hz``, ``EMC ... FreqOverride=0|1``. jetson_clocks pins a clock by
  raising its floor to its ceiling, so "on" reads as MinFreq == MaxFreq.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgebench.schemas import ErrorType, JobState
from edgebench.schemas.power import JetsonClocks, PowerMode, PowerModeRun

if TYPE_CHECKING:
    from edgebench.agent.jobrun import JobOutcome

log = logging.getLogger(__name__)

NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")

_QUERY_NAME = re.compile(r"^NV Power Mode:\s*(\S.*?)\s*$")
_STATUS = re.compile(r"\bpmode:(\d+)")
_CONF_MODE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")
_REBOOT = re.compile(r"reboot required", re.IGNORECASE)
_FREQ = re.compile(r"\b(MinFreq|MaxFreq|CurrentFreq|FreqOverride|Online)=(\d+)")


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

    def read(self) -> tuple[PowerMode, str] | None:
        """The mode in force and where it was read ("nvpmodel" or "status_file"), or None.

        Cheap enough for a window edge: one ``nvpmodel -q`` (no root needed), or
        two small files where the binary is absent (an agent container)."""
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


def read_power_mode(control: PowerModeControl | None = None) -> PowerMode | None:
    """The nvpmodel mode in force now, or None off a Jetson (the validity record's reader)."""
    found = (control or PowerModeControl()).read()
    return found[0] if found else None


def power_mode_changed(run: PowerModeRun | None) -> str | None:
    """Why a result's power mode makes it suspect, or None: it moved while the job ran."""
    if run is None or not run.changed:
        return None

    def label(mode: PowerMode | None) -> str:
        return "unknown" if mode is None else f"{mode.id} ({mode.name or '?'})"

    return f"power mode changed during the run: {label(run.during)} -> {label(run.after)}"


# -- around a job ----------------------------------------------------------------------
@dataclass
class _Seen:
    requested: int | None
    before: PowerMode | None = None
    during: PowerMode | None = None
    after: PowerMode | None = None
    set_by_agent: bool = False
    restored: bool | None = None

    def record(self) -> PowerModeRun | None:
        if self.before is None and self.requested is None:
            return None  # not a Jetson, nothing asked: nothing to say
        changed = self.during is not None and self.after is not None and self.during.id != self.after.id
        return PowerModeRun(requested=self.requested, before=self.before, during=self.during, after=self.after,
                            set_by_agent=self.set_by_agent, restored=self.restored, changed=changed)


@contextlib.contextmanager
def job_power_mode(requested: int | None, allowed: bool,
                   control: PowerModeControl | None = None) -> Iterator[_Seen]:
    """Set ``requested`` for the body and restore the previous mode after it.

    Raises PowerModeError before the body when the mode cannot be set. A
    failed restore is logged and recorded (``restored=False``), never raised:
    the job's result is already measured."""
    control = control or PowerModeControl()
    seen = _Seen(requested)
    if requested is not None and not allowed:
        raise PowerModeError(f"the job asks for power_mode {requested}, but this agent does not allow jobs to "
                             "change the power mode (allow_power_mode in its config)")
    found = control.read()
    seen.before = found[0] if found else None
    if requested is not None:
        if seen.before is None or seen.before.id != requested:
            control.set(requested)
            seen.set_by_agent = True
        now = control.read()
        seen.during = now[0] if now else None
    else:
        seen.during = seen.before
    try:
        yield seen
    finally:
        now = control.read()
        seen.after = now[0] if now else None
        if seen.set_by_agent and seen.before is not None:
            try:
                control.set(seen.before.id)
                seen.restored = True
            except PowerModeError as exc:
                seen.restored = False
                log.error("could not restore power mode %s after the job: %s", seen.before.id, exc)


def run_in_power_mode(run: Callable[[], JobOutcome], requested: int | None, allowed: bool,
                      control: PowerModeControl | None = None) -> JobOutcome:
    """Run a job (``JobRun.run``) inside its power mode; the result records the mode."""
    from edgebench.agent.jobrun import JobOutcome

    try:
        with job_power_mode(requested, allowed, control) as seen:
            outcome = run()
    except PowerModeError as exc:
        return JobOutcome(JobState.FAILED, str(exc), ErrorType.UNSUPPORTED)
    record = seen.record()
    if outcome.result is not None and record is not None:
        outcome.result = outcome.result.model_copy(update={"power_mode": record})
    return outcome
