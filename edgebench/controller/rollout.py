"""Staged rollout of a fleet-wide sweep, after AWS IoT Jobs' rollout and abort
configurations (``maximumPerMinute``; ``abortConfig`` with a failure
percentage and a minimum number of finished executions).

Jobs are released at an even pace, at most ``rate_per_minute`` per minute
(one every 60/N s, so a bad sweep shows itself after a few jobs, not after a
minute's burst). Once at least ``abort_min_jobs`` released jobs have finished
and more than ``abort_failure_percent`` of those failed (FAILED, TIMED_OUT or
REJECTED), the rollout aborts: jobs not yet released are never dispatched, and
released ones not yet started (DISPATCHED or QUEUED) are canceled. Jobs already
running finish: they are the measurements, and killing them halfway helps nobody.

``Rollout`` is the pure decision logic, driven by an injectable clock;
``run_rollout`` connects it to a FleetClient.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgebench.controller.errors import ControllerUsageError
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.schemas import TERMINAL_STATES, JobEvent, JobState

FAILURE_STATES = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.REJECTED})
_NOT_STARTED = frozenset({JobState.DISPATCHED, JobState.QUEUED})

Key = tuple[str, str]  # (job_id, device_id)
# A release due "now" is not postponed by float rounding of the clock.
_CLOCK_SLACK_S = 1e-6


class RolloutError(ControllerUsageError, ValueError):
    """An invalid rollout policy."""


@dataclass(frozen=True)
class RolloutPolicy:
    rate_per_minute: float | None = None  # None: release everything at once
    abort_failure_percent: float | None = None  # None: never abort
    abort_min_jobs: int = 1

    def __post_init__(self) -> None:
        if self.rate_per_minute is not None and not (self.rate_per_minute > 0 and math.isfinite(self.rate_per_minute)):
            raise RolloutError("--rate-per-minute must be a positive number")
        if self.abort_failure_percent is not None and not 0 <= self.abort_failure_percent <= 100:
            raise RolloutError("--abort-failure-percent must be between 0 and 100")
        if self.abort_min_jobs < 1:
            raise RolloutError("--abort-min-jobs must be at least 1")

    @property
    def staged(self) -> bool:
        """True when this policy changes anything compared with dispatching all at once."""
        return self.rate_per_minute is not None or self.abort_failure_percent is not None

    @property
    def interval_s(self) -> float:
        return 0.0 if self.rate_per_minute is None else 60.0 / self.rate_per_minute


@dataclass(frozen=True)
class RolloutSummary:
    total: int
    released: int
    finished: int
    failed: int
    aborted: bool
    reason: str | None
    not_released: list[Dispatched] = field(default_factory=list)
    canceled: list[Dispatched] = field(default_factory=list)
    still_open: set[Key] = field(default_factory=set)

    def describe(self) -> str:
        if not self.aborted:
            return (f"rollout: {self.released}/{self.total} jobs released, "
                    f"{self.failed} of {self.finished} finished failed")
        return (f"rollout ABORTED: {self.reason}; {len(self.not_released)} job(s) not dispatched, "
                f"{len(self.canceled)} queued job(s) canceled")


class Rollout:
    """Which jobs to release when, and whether to abort. No I/O; not thread-safe."""

    def __init__(self, plan: Sequence[Dispatched], policy: RolloutPolicy,
                 clock: Callable[[], float] = time.monotonic):
        self.plan = list(plan)
        self.policy = policy
        self.clock = clock
        self._next = 0  # index of the next job to release
        self._next_at: float | None = None  # None: the first job goes now
        self.states: dict[Key, JobState] = {}  # released jobs only
        self._items: dict[Key, Dispatched] = {}
        self.aborted = False
        self.reason: str | None = None
        self._canceled: list[Dispatched] = []
        self._cancel_sent = False

    # -- releasing ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Jobs neither released nor dropped by an abort."""
        return 0 if self.aborted else len(self.plan) - self._next

    def due(self) -> list[Dispatched]:
        """Jobs to dispatch now; they count as released (DISPATCHED) from here on."""
        out: list[Dispatched] = []
        now = self.clock()
        while self.pending and (self._next_at is None or now >= self._next_at - _CLOCK_SLACK_S):
            item = self.plan[self._next]
            self._next += 1
            key = (item.job.job_id, item.device_id)
            self.states[key] = JobState.DISPATCHED
            self._items[key] = item
            out.append(item)
            if self.policy.rate_per_minute is not None:
                # Pace from the actual release: a late call never releases a
                # catch-up burst, so no 60 s window ever holds more than N.
                self._next_at = now + self.policy.interval_s
                break
        return out

    def seconds_to_next(self) -> float | None:
        """How long until due() returns something, None when nothing is pending."""
        if not self.pending:
            return None
        return 0.0 if self._next_at is None else max(0.0, self._next_at - self.clock())

    # -- observing ----------------------------------------------------------------------
    def observe(self, job_id: str, device_id: str, state: JobState) -> None:
        key = (job_id, device_id)
        current = self.states.get(key)
        if current is None or current in TERMINAL_STATES:
            return  # not ours, or already finished (late or duplicate event)
        if state is JobState.DISPATCHED or (state is JobState.QUEUED and current is not JobState.DISPATCHED):
            return  # never move backwards
        self.states[key] = state
        if state in TERMINAL_STATES:
            self._check_abort()

    @property
    def finished(self) -> int:
        return sum(1 for s in self.states.values() if s in TERMINAL_STATES)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.states.values() if s in FAILURE_STATES)

    def _check_abort(self) -> None:
        p = self.policy
        if self.aborted or p.abort_failure_percent is None:
            return
        finished, failed = self.finished, self.failed
        if finished < p.abort_min_jobs:
            return
        percent = 100.0 * failed / finished
        if percent > p.abort_failure_percent:
            self.aborted = True
            self.reason = (f"{failed} of {finished} finished jobs failed ({percent:.0f}% > "
                           f"{p.abort_failure_percent:g}%)")

    def take_cancels(self) -> list[Dispatched]:
        """After an abort, once: released jobs that have not started, to cancel."""
        if not self.aborted or self._cancel_sent:
            return []
        self._cancel_sent = True
        self._canceled = [self._items[k] for k, s in self.states.items() if s in _NOT_STARTED]
        return list(self._canceled)

    # -- the end ------------------------------------------------------------------------
    def open_keys(self) -> set[Key]:
        return {k for k, s in self.states.items() if s not in TERMINAL_STATES}

    def summary(self) -> RolloutSummary:
        return RolloutSummary(
            total=len(self.plan), released=self._next, finished=self.finished, failed=self.failed,
            aborted=self.aborted, reason=self.reason,
            not_released=self.plan[self._next:] if self.aborted else [],
            canceled=list(self._canceled), still_open=self.open_keys(),
        )


def run_rollout(
    fleet: FleetClient,
    plan: Sequence[Dispatched],
    policy: RolloutPolicy,
    wait: bool = True,
    timeout_s: float = 24 * 3600,
    on_event: Callable[[JobEvent, bool], None] | None = None,
    on_release: Callable[[list[Dispatched]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RolloutSummary:
    """Release ``plan`` through ``fleet`` under ``policy``.

    Returns when every job is released (``wait=False``) or every released job
    has finished (``wait=True``), or after ``timeout_s``. Abort checks run all
    along, from the events that ``fleet`` receives (and stores).
    """
    rollout = Rollout(plan, policy, clock)
    deadline = clock() + timeout_s

    def handle(ev: JobEvent, new: bool) -> None:
        rollout.observe(ev.job_id, ev.device_id, ev.state)
        if on_event is not None:
            on_event(ev, new)

    while True:
        released = rollout.due()
        if released:
            fleet.dispatch(released)
            if on_release is not None:
                on_release(released)
        for item in rollout.take_cancels():
            fleet.cancel(item.job.job_id, [item.device_id], reason=f"rollout aborted: {rollout.reason}")
        if not rollout.pending and (not wait or not rollout.open_keys()):
            break
        if clock() >= deadline:
            break
        next_in = rollout.seconds_to_next()
        fleet.pump(0.2 if next_in is None else min(0.2, next_in), handle)
    return rollout.summary()
