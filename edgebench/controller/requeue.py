"""Re-queue suspect runs: a job whose result's validity record says ``suspect`` runs again, up to N times.

A suspect result (a thermal slowdown, another process on the GPU, a busy
host: agent/telemetry/validity.py) is kept: the store keeps every result,
and the report shows the latest attempt of each cell, so a clean rerun
replaces it there. The rerun is a new job (the same spec, its id suffixed
``-rqN``): a job id names one dispatch, and the agent refuses a second job
with an id it has seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.rollout import RolloutPolicy, RolloutSummary, run_rollout
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobEvent

MAX_REQUEUE = 5
_SUFFIX = re.compile(r"-rq\d+$")


def retry_id(job_id: str, round_no: int) -> str:
    """``job-7`` -> ``job-7-rq1``; a retry's retry replaces the suffix; at most 64 characters."""
    base = _SUFFIX.sub("", job_id)
    suffix = f"-rq{round_no}"
    return base[:64 - len(suffix)] + suffix


def suspect(store: ResultStore, item: Dispatched) -> list[str] | None:
    """The reasons when the job's latest stored result is suspect, else None."""
    rows = store.results(job_id=item.job.job_id, device_id=item.device_id)
    if not rows:
        return None
    latest = max(rows, key=lambda r: r.attempt)
    if latest.outcome != "OK":
        return None
    try:
        res = latest.result()
    except (ValidationError, ValueError):
        return None
    validity = res.telemetry.validity if res is not None and res.telemetry is not None else None
    return list(validity.reasons) if validity is not None and validity.verdict == "suspect" else None


def suspect_retries(store: ResultStore, plan: Sequence[Dispatched], round_no: int) -> list[Dispatched]:
    """The plan's jobs whose results are suspect, as new jobs to dispatch for round ``round_no`` (1-based)."""
    out = []
    for item in plan:
        if suspect(store, item) is not None:
            job = item.job.model_copy(update={"job_id": retry_id(item.job.job_id, round_no)})
            out.append(Dispatched(item.device_id, job))
    return out


@dataclass
class RequeueSummary:
    rounds: list[RolloutSummary] = field(default_factory=list)
    requeued: list[Dispatched] = field(default_factory=list)
    still_suspect: list[Dispatched] = field(default_factory=list)

    def describe(self) -> str:
        if not self.requeued:
            return "no suspect result: nothing re-queued"
        return (f"re-queued {len(self.requeued)} suspect run(s) in {len(self.rounds)} round(s); "
                f"{len(self.still_suspect)} still suspect")


def requeue_rounds(
    fleet: FleetClient,
    store: ResultStore,
    plan: Sequence[Dispatched],
    policy: RolloutPolicy,
    times: int,
    *,
    timeout_s: float = 24 * 3600,
    on_event: Callable[[JobEvent, bool], None] | None = None,
) -> RequeueSummary:
    """After ``plan`` finished: up to ``times`` rounds that rerun (and wait for) its suspect results."""
    if not 0 <= times <= MAX_REQUEUE:
        raise ValueError(f"re-queue suspect runs 0 to {MAX_REQUEUE} times, not {times}")
    out = RequeueSummary()
    current = list(plan)
    for round_no in range(1, times + 1):
        retries = suspect_retries(store, current, round_no)
        if not retries:
            break
        out.requeued += retries
        summary = run_rollout(fleet, retries, policy, wait=True, timeout_s=timeout_s, on_event=on_event)
        out.rounds.append(summary)
        current = retries
        if summary.aborted:
            break
    out.still_suspect = [item for item in current if suspect(store, item) is not None] if out.requeued else []
    return out
