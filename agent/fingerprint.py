"""The machine fingerprint attached to every result."""

from __future__ import annotations

import os
import platform
import socket
import sys

import psutil

from schemas import Fingerprint, GpuInfo


def agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgebench")
    except PackageNotFoundError:
        return "0+unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
        return info.get("PRETTY_NAME", platform.system())
    except OSError:
        return f"{platform.system()} {platform.release()}"


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
        cpu_cores_logical=os.cpu_count() or 1,
        cpu_cores_physical=psutil.cpu_count(logical=False),
        ram_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        libraries=dict(libraries),
        agent_version=agent_version(),
        container_image=container_image,
        container_digest=container_digest,
    )
