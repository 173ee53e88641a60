"""Background sampling of GPU telemetry and the runner's process tree.

One thread takes one :class:`Snapshot` per tick on a fixed schedule (ticks
that overrun are counted, not queued). The runner's window markers arrive
through :meth:`Sampler.mark_window` with the runner's own ``time.time()``;
each one wakes the thread for an extra tick that reads every value afresh
(``read_raw(fresh=True)``), so counters read less often than every tick are
still read right at the window's edges. :meth:`Sampler.stop` takes a last
fresh tick so every window is bracketed by samples, then summarises only
what lies inside the windows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edgebench.agent.errors import AgentError
from edgebench.agent.telemetry.base import Telemetry
from edgebench.agent.telemetry.host import HostMeter
from edgebench.agent.telemetry.process import ProcessTreeMeter
from edgebench.agent.telemetry.snapshot import Snapshot
from edgebench.agent.telemetry.summary import Window, build_timeseries, summarize
from edgebench.agent.telemetry.trace import TraceRecorder, pair_windows
from edgebench.schemas.telemetry import TelemetrySummary, TimeSeries

log = logging.getLogger(__name__)


class SamplerStateError(AgentError, RuntimeError):
    """start/stop called out of order."""


@dataclass(frozen=True)
class SamplerStats:
    """What the sampler itself cost and how well it kept its schedule."""

    ticks: int
    late_ticks: int  # ticks that started more than one interval late
    errors: int  # ticks that raised (logged, skipped)
    wall_s: float
    thread_cpu_s: float  # CPU time of the sampling thread alone

    @property
    def cpu_pct_of_core(self) -> float:
        return 100.0 * self.thread_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class SamplerReport:
    summary: TelemetrySummary | None
    timeseries: TimeSeries
    snapshots: tuple[Snapshot, ...]
    windows: tuple[Window, ...]
    stats: SamplerStats


class Sampler:
    """Samples ``telemetry`` every ``interval_s`` seconds on a background thread.

    ``gpu_indices`` None means every GPU. ``extra_pids`` are added to the
    process tree (a container's processes as the host sees them). With
    ``trace_path`` every raw reading and window marker is also written to a
    JSON-lines trace (:mod:`agent.telemetry.trace`) that tests can replay.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        interval_s: float = 0.1,
        gpu_indices: Sequence[int] | None = None,
        *,
        extra_pids: Iterable[int] = (),
        trace_path: str | Path | None = None,
        job_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.telemetry = telemetry
        self.interval_s = float(interval_s)
        self.gpu_indices = None if gpu_indices is None else tuple(gpu_indices)
        self.extra_pids = frozenset(extra_pids)
        self.trace_path = None if trace_path is None else Path(trace_path)
        self.job_id = job_id
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshots: list[Snapshot] = []
        self._markers: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._edge = threading.Event()  # a window marker arrived: tick now, fresh
        self._thread: threading.Thread | None = None
        self._meter: ProcessTreeMeter | None = None
        self._host: HostMeter | None = None
        self._recorder: TraceRecorder | None = None
        self._ticks = self._late = self._errors = 0
        self._thread_cpu_s = 0.0
        self._started_mono = 0.0
        self._stopped = False

    # -- public API -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, root_pid: int, extra_pids: Iterable[int] = ()) -> None:
        """Begin sampling the process tree of ``root_pid`` (plus ``extra_pids``)."""
        if self._thread is not None or self._stopped:
            raise SamplerStateError("a Sampler is started once")
        self.extra_pids = self.extra_pids | frozenset(extra_pids)
        self._meter = ProcessTreeMeter(root_pid, self.extra_pids)
        self._host = HostMeter()
        if self.trace_path is not None:
            self._recorder = TraceRecorder(
                self.trace_path, self.telemetry.source, self.telemetry.inventory(), self.interval_s,
                logical_cpus=self._host.logical_cpus, max_cpu_freq_mhz=self._host.max_freq_mhz,
            )
        self._started_mono = time.monotonic()
        self._tick(fresh=True)  # the first snapshot exists before start() returns
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()

    def mark_window(self, edge: str, t: float) -> None:
        """Record a window edge, "begin" or "end", at ``t`` (the runner's ``time.time()``)."""
        if edge not in ("begin", "end"):
            raise ValueError(f"edge must be 'begin' or 'end', not {edge!r}")
        with self._lock:
            self._markers.append((edge, float(t)))
        if self._recorder is not None:
            self._recorder.window(edge, float(t))
        self._edge.set()

    def latest(self) -> Snapshot | None:
        """The newest snapshot (for Prometheus), or None before the first tick."""
        with self._lock:
            return self._snapshots[-1] if self._snapshots else None

    def stop(
        self,
        window_images: int | None = None,
        measured_epochs: int | None = None,
        memory_policy: str | Enum | None = None,
    ) -> SamplerReport:
        """Stop sampling and summarise the samples inside the marked windows.

        A window left open (the runner died inside it) is closed at the last
        sample, so its telemetry is still reported.
        """
        if self._thread is None:
            raise SamplerStateError("stop() before start()")
        if not self._stopped:
            self._stopped = True
            self._stop.set()
            self._edge.set()
            self._thread.join()
            self._tick(fresh=True)  # brackets a window that ended after the last scheduled tick
        with self._lock:
            snapshots = tuple(self._snapshots)
            markers = list(self._markers)
        if markers and markers[-1][0] == "begin" and snapshots:
            markers.append(("end", max(snapshots[-1].t, markers[-1][1])))
        windows = tuple(pair_windows(markers))
        policy = memory_policy.value if isinstance(memory_policy, Enum) else memory_policy
        summary = summarize(
            snapshots,
            windows,
            source=self.telemetry.source,
            interval_s=self.interval_s,
            window_images=window_images,
            measured_epochs=measured_epochs,
            memory_policy=None if policy is None else str(policy),
            inventory=self.telemetry.inventory(),
            logical_cpus=self._host.logical_cpus if self._host else None,
            max_cpu_freq_mhz=self._host.max_freq_mhz if self._host else None,
        )
        stats = SamplerStats(
            ticks=self._ticks,
            late_ticks=self._late,
            errors=self._errors,
            wall_s=time.monotonic() - self._started_mono,
            thread_cpu_s=self._thread_cpu_s,
        )
        if self._recorder is not None:
            self._recorder.end(
                self._clock(),
                window_images=window_images,
                measured_epochs=measured_epochs,
                memory_policy=policy,
                ticks=stats.ticks,
            )
            self._recorder.close()
            self._recorder = None
        return SamplerReport(
            summary=summary,
            timeseries=build_timeseries(snapshots, windows),
            snapshots=snapshots,
            windows=windows,
            stats=stats,
        )

    # -- the sampling thread --------------------------------------------------

    def _run(self) -> None:
        cpu0 = time.thread_time()
        next_t = time.monotonic() + self.interval_s
        try:
            while True:
                edge = self._edge.wait(max(0.0, next_t - time.monotonic()))
                if self._stop.is_set():
                    break
                if edge:
                    # A window edge: an extra tick off the schedule, which goes on.
                    self._edge.clear()
                    self._tick(fresh=True)
                    continue
                self._tick()
                next_t += self.interval_s
                now = time.monotonic()
                if now > next_t:
                    # Overran a whole interval: skip the missed ticks rather than
                    # firing a burst of back-to-back ones.
                    self._late += 1
                    next_t = now
        finally:
            self._thread_cpu_s = time.thread_time() - cpu0

    def _tick(self, fresh: bool = False) -> None:
        meter = self._meter
        assert meter is not None and self._host is not None
        try:
            t = self._clock()
            proc = meter.sample(t)
            host = self._host.sample(fresh)
            raw = self.telemetry.read_raw(self.gpu_indices, fresh=fresh)
            gpus = self.telemetry.convert(raw, proc.pids | self.extra_pids)
            state = self.telemetry.device_state() if fresh else None
            snap = Snapshot(t=t, gpus=gpus, process=proc, host=host, state=state or None)
            if self._recorder is not None:
                self._recorder.tick(t, raw, proc, host, state or None)
        except Exception:  # the sampler must never take the agent down
            self._errors += 1
            log.exception("telemetry tick failed")
            return
        with self._lock:
            self._snapshots.append(snap)
            self._ticks += 1
