"""CPU-only machines: no GPU, so no GPU field at all (never a zero)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from edgebench.agent.telemetry.base import RawReading, Source, Telemetry
from edgebench.agent.telemetry.snapshot import GpuSample
from edgebench.schemas.status import GpuInfo


class NoGpuTelemetry(Telemetry):
    """Reports zero GPUs; the sampler still measures the runner's CPU and RSS."""

    @property
    def source(self) -> Source:
        return "none"

    def inventory(self) -> list[GpuInfo]:
        return []

    def read_raw(self, indices: Sequence[int] | None = None, *, fresh: bool = False) -> RawReading:
        return {}

    def convert(self, raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
        return ()
