"""Jetson power state: the nvpmodel power mode, the jetson_clocks state, and
what the agent did about a job's ``power_mode`` (docs/JETSON.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgebench.schemas.base import StrictModel


class PowerMode(StrictModel):
    """An nvpmodel power mode: its id (what ``nvpmodel -m`` takes) and name.

    Ids and names are per module and per JetPack release (an Orin Nano's 2 is
    MAXN_SUPER, an AGX Xavier's 2 is MODE_15W): compare ids only between
    results of one module type and release."""

    id: int = Field(ge=0, le=99)
    name: str | None = Field(default=None, max_length=64)


class JetsonClocks(StrictModel):
    """``jetson_clocks --show``: whether the clocks are pinned at their maximum.

    jetson_clocks pins each clock by raising its floor to its ceiling, so
    "locked" means MinFreq == MaxFreq for the GPU and every online CPU."""

    locked: bool
    gpu_min_mhz: float | None = None
    gpu_max_mhz: float | None = None
    gpu_cur_mhz: float | None = None
    cpu_locked: bool | None = None  # every online core's MinFreq == MaxFreq
    emc_override: bool | None = None  # EMC FreqOverride=1


class JetsonState(StrictModel):
    """What a Jetson's fingerprint adds: L4T release, power mode, clocks."""

    l4t: str | None = Field(default=None, max_length=64)  # "L4T R36.4"
    power_mode: PowerMode | None = None
    power_mode_source: Literal["nvpmodel", "status_file"] | None = None
    clocks: JetsonClocks | None = None  # None where jetson_clocks --show could not run (it needs root)


class PowerModeRun(StrictModel):
    """The power mode around one job, as the agent read and set it.

    ``before`` is read before the job, ``during`` once the requested mode was
    set (or ``before`` when none was requested), ``after`` at the end of the
    job, before any restore. ``changed`` says the mode moved while the job ran
    (someone ran nvpmodel, or a thermal or power event did): its figures are
    suspect."""

    requested: int | None = Field(default=None, ge=0, le=99)
    before: PowerMode | None = None
    during: PowerMode | None = None
    after: PowerMode | None = None
    set_by_agent: bool = False
    restored: bool | None = None  # None: nothing to restore
    changed: bool = False
