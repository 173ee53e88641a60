"""What a report says about each machine: from its results' fingerprints and its last status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgebench.schemas import AgentStatus, Result


@dataclass(frozen=True)
class DeviceInfo:
    """What a reader needs to know about a machine (from its results' fingerprints)."""

    device_id: str
    host: str = ""
    os: str = ""
    cpu: str = ""
    cores: str = ""
    ram_bytes: int | None = None
    gpus: str = "none"
    driver: str = ""
    python: str = ""
    agent_version: str = ""
    tags: tuple[str, ...] = ()
    libraries: dict[str, dict[str, str]] = field(default_factory=dict)  # backend -> library -> version
    fingerprints: int = 0  # distinct fingerprints seen (hardware/OS); > 1 means the box changed

    @property
    def has_gpu(self) -> bool:
        return self.gpus != "none"


def device_info(device_id: str, results: list[Result], status: AgentStatus | None) -> DeviceInfo:
    if not results:
        return DeviceInfo(device_id, tags=tuple(status.tags) if status else (), host=status.host if status else "",
                          gpus=", ".join(g.name for g in status.gpus) if status and status.gpus else "none")
    fp = max(results, key=lambda r: r.finished_at).fingerprint
    libraries: dict[str, dict[str, str]] = {}
    for r in sorted(results, key=lambda r: r.finished_at):
        libraries[r.backend.value] = dict(r.fingerprint.libraries)
    hardware = {(r.fingerprint.host, r.fingerprint.cpu_model, r.fingerprint.ram_bytes,
                 tuple((g.name, g.driver) for g in r.fingerprint.gpus), r.fingerprint.os) for r in results}
    gpu_names: Counter[str] = Counter(g.name for g in fp.gpus)
    gpus = ", ".join(f"{n}× {name}" if n > 1 else name for name, n in gpu_names.items()) or "none"
    first = fp.gpus[0] if fp.gpus else None
    return DeviceInfo(
        device_id=device_id, host=fp.host, os=fp.os, cpu=fp.cpu_model,
        cores=f"{fp.cpu_cores_physical or '?'}C/{fp.cpu_cores_logical}T", ram_bytes=fp.ram_bytes, gpus=gpus,
        driver=f"driver {first.driver}, CUDA {first.cuda}" if first and first.driver else "",
        python=fp.python, agent_version=fp.agent_version, tags=tuple(status.tags) if status else (),
        libraries=libraries, fingerprints=len(hardware),
    )
