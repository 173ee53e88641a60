"""CPU and resident memory of the runner's process tree (psutil).

The tree is the root pid and all its descendants, plus any pids the caller
names (a container's processes, seen from the host). Listing descendants
reads each member's /proc/<pid>/task/*/children on Linux; elsewhere psutil's
``children`` reads every process on the machine (about 15 us per process).
Either way the tree is listed again only every ``rescan_s`` (1 s); in
between, the known members are read directly (about 40 us each). A worker
started mid-job is found within ``rescan_s`` and none of its CPU time is
lost: a process new to the tree brings all its CPU time.

CPU percent comes from each process's CPU-time delta between ticks rather
than ``psutil.Process.cpu_percent``, whose first call per process returns 0
and would under-count short-lived workers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

import psutil

from edgebench.agent.telemetry.snapshot import ProcessSample


@functools.cache
def _proc_children_available() -> bool:
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    """All descendants of ``proc``.

    On Linux from /proc/<pid>/task/<tid>/children, so the cost grows with the
    tree rather than with the machine: psutil's ``children`` reads every
    process's stat file, which a box running many jobs at once (the
    fleet-scale benchmark: a thousand runners) pays once per job per second.
    Elsewhere, or on kernels without that file, psutil's way.
    """
    if not _proc_children_available():
        return list(proc.children(recursive=True))
    found: list[psutil.Process] = []
    todo = [proc.pid]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # exited since listed: its children went to a reaper, out of this tree
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except FileNotFoundError:
                continue  # the thread ended meanwhile
            for kid in kids:
                todo.append(kid)
                try:
                    found.append(psutil.Process(kid))
                except psutil.NoSuchProcess:
                    pass
    return found


class ProcessTreeMeter:
    """Samples one process tree; not thread-safe (one sampler thread owns it)."""

    def __init__(self, root_pid: int, extra_pids: Iterable[int] = (), rescan_s: float = 1.0) -> None:
        self.root_pid = root_pid
        self.extra_pids = frozenset(extra_pids)
        self.rescan_s = rescan_s
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_s: dict[int, float] = {}
        self._last_t: float | None = None
        self._last_scan_t: float | None = None

    def _rescan(self) -> None:
        found: dict[int, psutil.Process] = {}
        for pid in (self.root_pid, *self.extra_pids):
            try:
                proc = psutil.Process(pid)
                members = [proc, *_descendants(proc)]
            except psutil.Error:
                continue
            for member in members:
                cached = self._procs.get(member.pid)
                # Process equality compares pid and creation time: a recycled pid is a new process.
                if cached is not None and cached == member:
                    found[member.pid] = cached
                else:
                    found[member.pid] = member
                    self._cpu_s.pop(member.pid, None)
        self._procs = found

    def _tree(self, now: float) -> list[psutil.Process]:
        if self._last_scan_t is None or now - self._last_scan_t >= self.rescan_s or not self._procs:
            self._rescan()
            self._last_scan_t = now
        return list(self._procs.values())

    def sample(self, now: float) -> ProcessSample:
        """Measure the tree; ``now`` is the tick's ``time.time()``."""
        procs = self._tree(now)
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
                # New to the tree since the last listing, so born since then (a tree
                # only gains processes by forking): all its CPU time is new. Its
                # create_time cannot tell, being only as exact as the kernel's boot time.
                cpu_delta_s += cpu_s
        self._cpu_s = cpu_seen
        self._procs = {pid: p for pid, p in self._procs.items() if pid in cpu_seen}
        self._last_t = now
        if not pids:
            return ProcessSample(pids=frozenset(), cpu_pct=None, rss_bytes=None)
        cpu_pct = None
        if last_t is not None and now > last_t:
            cpu_pct = 100.0 * cpu_delta_s / (now - last_t)
        return ProcessSample(pids=frozenset(pids), cpu_pct=cpu_pct, rss_bytes=rss_total)
