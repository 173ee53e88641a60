"""Job events published by agents (lifecycle modelled on AWS IoT Jobs)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from edgebench.schemas.base import Count32, Identifier, MessageId, StrictModel, Timestamp, exact_pattern_schema
from edgebench.schemas.result import Result

# The job id of an answer to a message that named no usable job id (junk, a
# non-identifier): "-", which no dispatched job can have.
UNKNOWN_JOB_ID = "-"
_EVENT_JOB_ID = r"^(-|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
EventJobId = Annotated[str, StringConstraints(pattern=_EVENT_JOB_ID), exact_pattern_schema(_EVENT_JOB_ID)]


class JobState(str, Enum):
    DISPATCHED = "DISPATCHED"  # controller side only
    QUEUED = "QUEUED"
    REJECTED = "REJECTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELED = "CANCELED"


TERMINAL_STATES = frozenset(
    {JobState.REJECTED, JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED}
)


class ErrorType(str, Enum):
    OOM = "OOM"
    DATA_MISSING = "DataMissing"
    BACKEND_ERROR = "BackendError"
    RUNNER_CRASH = "RunnerCrash"
    INTERRUPTED = "Interrupted"
    INVALID = "Invalid"
    UNSUPPORTED = "Unsupported"
    LOST = "Lost"  # the agent never received the job (an answer to a replay request)
    EXPIRED = "Expired"  # the agent no longer keeps the job's events (older than its retention)
    # the job's model file could not be delivered or was refused before anything loaded it (agent/artifacts.py):
    # the reason starts with the kind: digest-mismatch, oversize, unsupported-format, unavailable
    ARTIFACT = "Artifact"


class Progress(StrictModel):
    phase: Literal["setup", "warmup", "measure", "validate", "done"]
    epoch: Count32
    epochs: Count32
    repeat: Count32 = Field(default=1, ge=1)
    img_per_s: float | None = None
    loss: float | None = None


class JobEvent(StrictModel):
    """One step of a job's execution on one device.

    ``(job_id, device_id, attempt, seq)`` identifies an event; QoS 1 redelivery
    and the agent's replays repeat it byte for byte. ``attempt`` >= 1 is an
    execution the agent accepted; ``attempt`` 0 is an answer to one message
    (``in_reply_to``: its msg_id) that the agent did not accept as a job (REJECTED),
    or to a replay request for a job it never received (FAILED, error_type Lost).
    An answer never enters an accepted execution's stream, and the controller
    applies it only to the message it sent (docs/JOBS.md).
    """

    kind: Literal["event"] = "event"
    job_id: EventJobId
    device_id: Identifier
    attempt: Count32 = Field(default=1)
    seq: Count32 = Field(description="Per (job, attempt) sequence number, for idempotency.")
    state: JobState
    at: Timestamp
    in_reply_to: MessageId | None = Field(default=None, description="msg_id of the message this answers.")
    progress: Progress | None = None
    reason: str | None = Field(default=None, max_length=4000)
    field: str | None = Field(default=None, max_length=500, description="Offending field.")
    error_type: ErrorType | None = None
    log_tail: str | None = Field(default=None, max_length=20000)
    result: Result | None = None
    sweep_id: Identifier | None = None
