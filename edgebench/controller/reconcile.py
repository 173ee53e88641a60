"""Reconciliation: find jobs whose events were lost, and ask their agents again.

A broker that crashes within its autosave interval forgets messages it had
already acknowledged: a job can then stay IN_PROGRESS at the controller while
its agent knows it SUCCEEDED. Agents keep every job's state-change events for
their retention period (30 days by default, agent config ``retention_s``);
the controller looks for open jobs that have been silent for longer than they
could be (their step timeout, plus a grace period) and sends each one's agent
a replay request, as AWS IoT Jobs' DescribeJobExecution does. The agent
republishes what it kept, byte for byte, and ingestion (idempotent) stores
what was missing. ``controller collect`` does this every few minutes;
``controller reconcile`` does one pass now.

``overdue`` is pure (an injected clock); ``reconcile`` is its I/O adapter.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import OpenJob, ResultStore
from edgebench.schemas import AgentStatus, JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilePolicy:
    grace_s: float = 60.0  # beyond a job's step timeout before its silence is suspicious
    queued_after_s: float = 600.0  # a DISPATCHED or QUEUED job silent this long is asked about
    every_s: float = 300.0  # ask about one job at most this often


DEFAULT_POLICY = ReconcilePolicy()


@dataclass(frozen=True)
class ReconcileReport:
    asked: dict[str, list[str]]  # device -> job ids
    skipped_offline: list[tuple[str, str]]  # (job, device) whose device is offline: its queue will deliver

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.asked.values())


def overdue(job: OpenJob, now: datetime, policy: ReconcilePolicy = DEFAULT_POLICY) -> bool:
    """Whether an open job has been silent longer than a running or waiting job can be."""
    if job.reconciled_at is not None and (now - job.reconciled_at).total_seconds() < policy.every_s:
        return False
    if job.updated_at is None:
        return True
    silent_s = (now - job.updated_at).total_seconds()
    if job.state is JobState.IN_PROGRESS:
        return silent_s > job.spec.step_timeout_s + policy.grace_s
    return silent_s > policy.queued_after_s


def plan(jobs: list[OpenJob], statuses: dict[str, AgentStatus], now: datetime,
         policy: ReconcilePolicy = DEFAULT_POLICY, everything: bool = False) -> ReconcileReport:
    asked: dict[str, list[str]] = defaultdict(list)
    offline: list[tuple[str, str]] = []
    for job in jobs:
        if not everything and not overdue(job, now, policy):
            continue
        status = statuses.get(job.device_id)
        if status is not None and not status.online:
            offline.append((job.job_id, job.device_id))
            continue
        asked[job.device_id].append(job.job_id)
    return ReconcileReport(dict(asked), offline)


def reconcile(fleet: FleetClient, store: ResultStore, now: datetime | None = None,
              policy: ReconcilePolicy = DEFAULT_POLICY, everything: bool = False) -> ReconcileReport:
    """Send replay requests for the overdue jobs (``everything``: for every open job)."""
    now = now or datetime.now(timezone.utc)
    report = plan(store.open_jobs(), dict(fleet.statuses), now, policy, everything)
    for device_id, job_ids in report.asked.items():
        fleet.replay(device_id, job_ids)
        store.mark_reconciled([(j, device_id) for j in job_ids], now)
    if report.count:
        log.info("reconciliation: asked %d device(s) to replay %d job(s)", len(report.asked), report.count)
    return report
