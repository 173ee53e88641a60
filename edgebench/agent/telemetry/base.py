"""The telemetry interface that every device family implements."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Literal

from edgebench.agent.errors import AgentError
from edgebench.agent.telemetry.snapshot import GpuSample
from edgebench.schemas.status import GpuInfo

Source = Literal["nvml", "jetson", "none"]
RawReading = dict[str, Any]  # JSON-able, vendor-specific; what a trace records


class TelemetryError(AgentError):
    """Base class of telemetry errors."""


class TelemetryUnavailable(TelemetryError):
    """The requested implementation cannot run on this machine (no driver, no tool)."""


class Telemetry(abc.ABC):
    """GPU telemetry for one machine.

    A reading is split in two so that traces can be recorded and replayed:
    :meth:`read_raw` talks to the hardware and returns JSON-able raw values,
    :meth:`convert` is a pure function from those values to :class:`GpuSample`.
    Process CPU and RSS are not here: they come from psutil on every platform
    (see :mod:`agent.telemetry.process`).
    """

    @property
    @abc.abstractmethod
    def source(self) -> Source:
        """Which family this is; recorded in every summary."""

    @abc.abstractmethod
    def inventory(self) -> list[GpuInfo]:
        """Static facts per GPU (model, UUID, driver, memory, power limit)."""

    @abc.abstractmethod
    def read_raw(self, indices: Sequence[int] | None = None, *, fresh: bool = False) -> RawReading:
        """Read the hardware once; ``indices`` None means every GPU.

        An implementation may read some values less often than it is called
        (see the NVML read plans); ``fresh`` asks for every value now (the
        sampler does at window edges).
        """

    @abc.abstractmethod
    def convert(self, raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
        """Turn a raw reading into samples; ``pids`` is the runner's process tree."""

    def read(self, pids: Iterable[int] = (), indices: Sequence[int] | None = None) -> tuple[GpuSample, ...]:
        return self.convert(self.read_raw(indices), pids)

    def device_state(self) -> dict[str, Any]:
        """Power-state facts for the validity record, read at each window edge (cheap calls only).

        The hook for device families whose power state is not in the samples:
        a Jetson returns ``{"nvpmodel_mode": "MAXN", "jetson_clocks": True}``
        (either key may be missing where unreadable). JSON-able values only;
        the default has none.
        """
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most implementations hold nothing
        """Release the driver handle or child process."""

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
