"""Choose the telemetry implementation for this machine."""

from __future__ import annotations

import logging
import shutil
from typing import Literal

from edgebench.agent.telemetry.base import Telemetry, TelemetryUnavailable
from edgebench.agent.telemetry.jetson import JetsonTelemetry, is_jetson
from edgebench.agent.telemetry.nogpu import NoGpuTelemetry
from edgebench.agent.telemetry.nvml import DEFAULT_READ_PLAN, NvmlTelemetry

log = logging.getLogger(__name__)

TelemetryKind = Literal["auto", "nvml", "jetson", "none"]


def create_telemetry(
    kind: TelemetryKind = "auto", interval_s: float = 0.1, nvml_read_plan: str = DEFAULT_READ_PLAN
) -> Telemetry:
    """``nvml``/``jetson`` raise :class:`TelemetryUnavailable` where they cannot run.

    ``auto`` takes NVML when it initialises and sees a GPU, else Jetson when
    ``tegrastats`` exists, else none. On a Jetson module, where both may
    exist, the Jetson reader wins (tegrastats and/or the INA3221 rails in
    sysfs, so also in a container without tegrastats): NVML on the integrated
    GPU reports neither utilisation nor power (zeus#103). ``interval_s`` sets tegrastats' own period;
    ``nvml_read_plan`` which NVML readings are taken every tick (:data:`READ_PLANS`).
    """
    if kind == "nvml":
        return NvmlTelemetry(plan=nvml_read_plan)
    if kind == "jetson":
        return JetsonTelemetry(interval_s=interval_s)
    if kind == "none":
        return NoGpuTelemetry()
    if kind != "auto":
        raise ValueError(f"unknown telemetry kind {kind!r}")
    has_tegrastats = shutil.which("tegrastats") is not None
    if is_jetson():
        try:
            return JetsonTelemetry(interval_s=interval_s)
        except TelemetryUnavailable as exc:
            log.info("Jetson telemetry unavailable: %s", exc)
    try:
        return NvmlTelemetry(plan=nvml_read_plan)
    except TelemetryUnavailable as exc:
        log.info("NVML telemetry unavailable: %s", exc)
    if has_tegrastats:
        try:
            return JetsonTelemetry(interval_s=interval_s)
        except TelemetryUnavailable as exc:
            log.info("Jetson telemetry unavailable: %s", exc)
    return NoGpuTelemetry()
