"""Messages in: decode, signature, dedupe, check, store, answer.

Every message on the agent's job topics gets exactly one of: a job stored as
QUEUED (with its QUEUED event, in one transaction), a cancel or replay acted
on, a duplicate silently dropped, or an answer. An answer is a REJECTED event
with ``attempt`` 0 and ``in_reply_to`` set to the message's msg_id: it never
enters the stream of a job this agent accepted, so no copy of a job, valid or
not, signed or not, can change the outcome of the real one (docs/JOBS.md).

Nothing from the message is echoed unless it is well-formed: a job id that is
not an identifier is answered as job "-", and the reason quotes it escaped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.agent import faults
from edgebench.agent.outbox import FIELD_MAX, REASON_MAX, Events
from edgebench.agent.store import FIRST_ATTEMPT, AgentStore
from edgebench.agent.validation import Rejection, check_job
from edgebench.common.mqtt import Message
from edgebench.common.text import printable
from edgebench.schemas import (
    UNKNOWN_JOB_ID,
    BackendInfo,
    CancelRequest,
    Envelope,
    ErrorType,
    JobSpec,
    JobState,
    ReplayRequest,
)
from edgebench.schemas.envelope import DecodeError, decode

log = logging.getLogger(__name__)


@dataclass
class IntakeConfig:
    device_id: str
    events_topic: str
    job_topics: list[str]
    max_payload_bytes: int
    job_public_key: Path | None


class Intake:
    """Handles one inbound message at a time (the agent's main thread)."""

    def __init__(self, cfg: IntakeConfig, store: AgentStore, events: Events,
                 backends: Callable[[], dict[str, BackendInfo]], gpu_count: int,
                 on_queued: Callable[[str, int], None], cancel_running: Callable[[str, str], None]):
        self.cfg = cfg
        self.store = store
        self.events = events
        self.backends = backends
        self.gpu_count = gpu_count
        self.on_queued = on_queued
        self.cancel_running = cancel_running
        self._public_key: Any = None  # loaded on first use (cryptography is imported only then)

    def handle(self, msg: Message) -> None:
        if msg.topic not in self.cfg.job_topics:
            # a persistent session outlives configuration: subscriptions of an
            # earlier fleet or tag still deliver here. Not ours: drop it.
            log.warning("ignoring a message on %s, not one of this agent's job topics", printable(msg.topic, 300))
            return
        try:
            env = decode(msg.payload, self.cfg.max_payload_bytes)
        except DecodeError as exc:
            self.reject(exc.job_id, exc.msg_id, exc.reason, exc.field or "payload")
            return
        body = env.body
        job_id = getattr(body, "job_id", None)
        if not isinstance(body, (JobSpec, CancelRequest, ReplayRequest)):
            self.reject(None, env.msg_id, f"a {body.kind!r} message is not for an agent", "body.kind")
            return
        if self.cfg.job_public_key is not None:
            problem = self._signature_problem(env)
            if problem:
                # signing covers cancels and replays too (docs/SECURITY.md)
                self.reject(job_id, env.msg_id, problem, "signature")
                return
        if isinstance(body, CancelRequest):
            self.cancel(body)
        elif isinstance(body, ReplayRequest):
            self.replay(body, env.msg_id)
        else:
            self.take_job(body, env.msg_id)

    # -- jobs -------------------------------------------------------------------------
    def take_job(self, job: JobSpec, msg_id: str) -> None:
        if self.store.has_job(job.job_id):
            log.info("job %s: duplicate delivery or replayed copy ignored (msg %s)", job.job_id, msg_id)
            return
        try:
            check_job(job, self.backends(), self.gpu_count)
        except Rejection as rej:
            self.reject(job.job_id, msg_id, rej.reason, rej.field, job.sweep_id)
            return
        if not self.store.accept(job, msg_id, self.cfg.events_topic,
                                 self.events.builder(job.job_id, FIRST_ATTEMPT, JobState.QUEUED, job.sweep_id)):
            return
        log.info("job %s queued: %s %s bs %d", job.job_id, job.backend.value, job.workload.model,
                 job.workload.batch_size)
        faults.point("intake:before-ack")
        self.on_queued(job.job_id, FIRST_ATTEMPT)

    def reject(self, job_id: str | None, msg_id: str | None, reason: str, field: str,
               sweep_id: str | None = None) -> None:
        """Answer a message that is not an accepted job (attempt 0, never a job's stream)."""
        reason = printable(reason, REASON_MAX - 100)
        log.info("REJECTED message %s (job %s): %s (%s)", printable(msg_id or "-"), printable(job_id or "-"),
                 reason, printable(field, 200))
        target = job_id or UNKNOWN_JOB_ID
        # retained (for a replay) only where the id is not one of this agent's accepted
        # jobs: a rejected copy of a running job must not be replayed as that job's
        keep = job_id if job_id is not None and not self.store.has_job(job_id) else None
        self.store.answer(self.cfg.events_topic, self.events.builder(
            target, 0, JobState.REJECTED, sweep_id, in_reply_to=msg_id, reason=reason,
            field=printable(field, FIELD_MAX - 20), error_type=ErrorType.INVALID),
            job_id=keep)

    def _signature_problem(self, env: Envelope) -> str | None:
        from edgebench.common.signing import SignatureError, check_signature, load_public_key

        assert self.cfg.job_public_key is not None
        if self._public_key is None:
            self._public_key = load_public_key(self.cfg.job_public_key)
        try:
            check_signature(env, self._public_key)
        except SignatureError as exc:
            return str(exc)
        return None

    # -- cancel -------------------------------------------------------------------------
    def cancel(self, req: CancelRequest) -> None:
        job = self.store.get(req.job_id)
        if job is None:
            log.info("cancel for unknown job %s ignored", req.job_id)
            return
        if job.state is JobState.QUEUED:
            sweep_id = job.spec.sweep_id
            if self.store.transition(job.job_id, job.attempt, JobState.CANCELED, self.cfg.events_topic,
                                     self.events.builder(job.job_id, job.attempt, JobState.CANCELED, sweep_id,
                                                         reason=printable(req.reason, REASON_MAX)),
                                     from_states=[JobState.QUEUED]):
                log.info("job %s canceled while queued", job.job_id)
                faults.point("cancel:committed")
                return
            job = self.store.get(req.job_id) or job  # a worker claimed it meanwhile
        if job.state is JobState.IN_PROGRESS:
            self.cancel_running(job.job_id, req.reason)

    # -- reconciliation -----------------------------------------------------------------
    def replay(self, req: ReplayRequest, msg_id: str) -> None:
        """Publish again what this agent kept of each job, byte for byte; a job it never
        received is answered FAILED with error_type Lost (the controller may send it
        again), one whose events it no longer keeps FAILED with error_type Expired."""
        for job_id in req.job_ids:
            items = self.store.retained(job_id)
            if items:
                self.store.republish(items)
                log.info("replayed %d event(s) of job %s", len(items), job_id)
                continue
            known = self.store.has_job(job_id)
            reason = ("the agent no longer keeps events of this job (older than its retention period)" if known
                      else "the agent never received this job (lost in transit, or expired before delivery)")
            log.warning("replay of job %s: %s", job_id, reason)
            self.store.answer(self.cfg.events_topic, self.events.builder(
                job_id, 0, JobState.FAILED, in_reply_to=msg_id, reason=reason,
                error_type=ErrorType.EXPIRED if known else ErrorType.LOST), job_id=None)
