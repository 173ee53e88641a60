"""Which GPUs a job gets. Sequential by default; with ``concurrent_per_gpu`` a
multi-GPU agent runs one job per GPU at once, each pinned to its own GPU."""

from __future__ import annotations

import threading


class GpuPool:
    """Hands out GPU indices; a job asking for k GPUs waits until k are free.

    Allocation is all-or-nothing under one lock, so two jobs can never each
    hold part of what the other needs.
    """

    def __init__(self, indices: list[int]):
        self._all = list(indices)
        self._free = list(indices)
        self._cond = threading.Condition()

    @property
    def size(self) -> int:
        return len(self._all)

    def acquire(self, count: int, stop: threading.Event | None = None) -> list[int] | None:
        """Take ``count`` GPUs (lowest indices first); None if stop is set while waiting."""
        if count > len(self._all):
            raise ValueError(f"asked for {count} GPUs, the pool has {len(self._all)}")
        with self._cond:
            while len(self._free) < count:
                if stop is not None and stop.is_set():
                    return None
                self._cond.wait(0.2)
            taken = sorted(self._free)[:count]
            for i in taken:
                self._free.remove(i)
            return taken

    def release(self, indices: list[int]) -> None:
        with self._cond:
            self._free.extend(i for i in indices if i not in self._free)
            self._cond.notify_all()
