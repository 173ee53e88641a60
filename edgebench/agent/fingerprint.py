"""The machine fingerprint attached to every result."""

from __future__ import annotations

import os
import platform
import socket
import sys

import psutil

from edgebench.agent.telemetry.base import Telemetry
from edgebench.agent.telemetry.jetson import device_tree_model, is_jetson, l4t_release
from edgebench.agent.telemetry.jetson_power import PowerModeControl, clocks_pinned
from edgebench.common.version import edgebench_version
from edgebench.schemas import Fingerprint, GpuInfo
from edgebench.schemas.power import JetsonClocks, JetsonState

# /proc/cpuinfo keys that name the CPU, in order of preference: x86 has
# "model name"; ARM boards (Jetson) often have only "Hardware" or nothing.
_CPUINFO_KEYS = ("model name", "Hardware", "Processor", "cpu model")


def agent_version() -> str:
    """The edgebench version that every status and result names (from git: edgebench/common/version.py)."""
    return edgebench_version()


def cpu_model() -> str:
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in _CPUINFO_KEYS and key not in found and value.strip():
                    found[key] = value.strip()
    except OSError:
        pass
    for key in _CPUINFO_KEYS:
        if key in found:
            return found[key]
    board = device_tree_model()
    if board:
        return f"{board} ({platform.machine()})"
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
        return info.get("PRETTY_NAME", platform.system())
    except OSError:
        return f"{platform.system()} {platform.release()}"


def gpu_inventory(telemetry: Telemetry) -> list[GpuInfo]:
    """Model, UUID, driver, CUDA driver version, memory and power limit of every GPU."""
    return telemetry.inventory()


def jetson_state(control: PowerModeControl | None = None) -> JetsonState | None:
    """L4T release, nvpmodel mode and jetson_clocks state; None off a Jetson.

    Read for every result, so a figure always says which power mode and clock
    policy produced it (a Jetson's throughput moves by 2-4x between modes)."""
    if not is_jetson():
        return None
    control = control or PowerModeControl()
    found = control.read()
    return JetsonState(
        l4t=l4t_release(),
        power_mode=found[0] if found else None,
        power_mode_source=found[1] if found else None,  # type: ignore[arg-type]
        clocks=control.read_clocks() or _clocks_from_sysfs(),
    )


def _clocks_from_sysfs() -> JetsonClocks | None:
    """jetson_clocks --show needs root; without it, whether the clocks are pinned is still in sysfs."""
    pinned = clocks_pinned()
    return None if pinned is None else JetsonClocks(locked=pinned)


def machine_fingerprint(
    libraries: dict[str, str],
    gpus: list[GpuInfo],
    container_image: str | None = None,
    container_digest: str | None = None,
) -> Fingerprint:
    return Fingerprint(
        host=socket.gethostname(),
        os=os_name(),
        kernel=platform.release(),
        python=sys.version.split()[0],
        cpu_model=cpu_model(),
        cpu_cores_logical=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        cpu_cores_physical=psutil.cpu_count(logical=False),
        ram_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        libraries=dict(libraries),
        agent_version=agent_version(),
        container_image=container_image,
        container_digest=container_digest,
        arch=platform.machine() or None,
        jetson=jetson_state(),
    )
