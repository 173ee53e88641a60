"""CPU and resident memory of the runner's process tree (psutil).

The tree is the root pid and all its descendants, found again every tick so
that worker processes a framework starts mid-job are counted, plus any pids
the caller names (a container's processes, seen from the host). CPU percent
is computed from each process's CPU-time delta between ticks rather than
``psutil.Process.cpu_percent``, whose first call per process returns 0 and
would under-count short-lived workers.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil

from agent.telemetry.snapshot import ProcessSample


class ProcessTreeMeter:
    """Samples one process tree; not thread-safe (one sampler thread owns it)."""

    def __init__(self, root_pid: int, extra_pids: Iterable[int] = ()) -> None:
        self.root_pid = root_pid
        self.extra_pids = frozenset(extra_pids)
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_s: dict[int, float] = {}
        self._last_t: float | None = None

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        # is_running() also compares the creation time, so a recycled pid is not mistaken for ours.
        if proc is not None and proc.is_running():
            return proc
        self._cpu_s.pop(pid, None)
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            self._procs.pop(pid, None)
            return None
        self._procs[pid] = proc
        return proc

    def _tree(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in (self.root_pid, *self.extra_pids):
            proc = self._process(pid)
            if proc is None:
                continue
            found[proc.pid] = proc
            try:
                children = proc.children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                cached = self._process(child.pid)
                if cached is not None:
                    found[cached.pid] = cached
        return list(found.values())

    def sample(self, now: float) -> ProcessSample:
        """Measure the tree; ``now`` is the tick's ``time.time()``."""
        procs = self._tree()
        pids: set[int] = set()
        rss_total = 0
        cpu_delta_s = 0.0
        cpu_seen: dict[int, float] = {}
        last_t = self._last_t
        for proc in procs:
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue  # exited, not yet reaped: no memory, no more CPU
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
            except psutil.Error:
                continue  # exited between listing and reading
            cpu_s = times.user + times.system
            pids.add(proc.pid)
            rss_total += rss
            cpu_seen[proc.pid] = cpu_s
            prev = self._cpu_s.get(proc.pid)
            if prev is not None:
                cpu_delta_s += max(0.0, cpu_s - prev)
            elif last_t is not None:
                # New in the tree since the last tick, so born since then (a tree only
                # gains processes by forking): all its CPU time is new. Its
                # create_time cannot tell, being only as exact as the kernel's boot time.
                cpu_delta_s += cpu_s
        self._cpu_s = cpu_seen
        for pid in list(self._procs):
            if pid not in cpu_seen:
                del self._procs[pid]
        self._last_t = now
        if not pids:
            return ProcessSample(pids=frozenset(), cpu_pct=None, rss_bytes=None)
        cpu_pct = None
        if last_t is not None and now > last_t:
            cpu_pct = 100.0 * cpu_delta_s / (now - last_t)
        return ProcessSample(pids=frozenset(pids), cpu_pct=cpu_pct, rss_bytes=rss_total)
