"""The ``power_mode`` job knob on a Jetson: :func:`run_in_power_mode` sets the
job's nvpmodel mode before it, restores the one that was in force after it,
and records in the result what it saw (before, during, after). An agent does
this only when its config says ``allow_power_mode: true``: nvpmodel needs root
and changes the whole board (CPU cores online, clock ceilings, EMC cap), which
a site may not want a benchmark to touch. Reading the power state (nvpmodel,
jetson_clocks) is agent/telemetry/jetson_power.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgebench.agent.telemetry.jetson_power import (
    PowerModeControl,
    PowerModeError,
    clocks_pinned,
    device_state,
    parse_jetson_clocks,
    parse_nvpmodel_conf,
    parse_nvpmodel_query,
    parse_status_file,
    read_power_mode,
)
from edgebench.schemas import ErrorType, JobState
from edgebench.schemas.power import PowerMode, PowerModeRun

if TYPE_CHECKING:
    from edgebench.agent.jobrun import JobOutcome

log = logging.getLogger(__name__)

__all__ = ["PowerModeControl", "PowerModeError", "clocks_pinned", "device_state", "job_power_mode",
           "parse_jetson_clocks", "parse_nvpmodel_conf", "parse_nvpmodel_query", "parse_status_file",
           "power_mode_changed", "read_power_mode", "run_in_power_mode"]


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
