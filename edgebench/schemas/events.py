"""Job events published by agents (lifecycle modelled on AWS IoT Jobs)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import Field

from edgebench.schemas.base import Identifier, StrictModel
from edgebench.schemas.result import Result


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


class Progress(StrictModel):
    phase: Literal["setup", "warmup", "measure", "validate", "done"]
    epoch: int = Field(ge=0)
    epochs: int = Field(ge=0)
    repeat: int = Field(default=1, ge=1)
    img_per_s: float | None = None
    loss: float | None = None


class JobEvent(StrictModel):
    kind: Literal["event"] = "event"
    job_id: str = Field(max_length=200)  # echoes untrusted input in REJECTED events
    device_id: Identifier
    attempt: int = Field(default=1, ge=1)
    seq: int = Field(ge=0, description="Per (job, attempt) sequence number, for idempotency.")
    state: JobState
    at: datetime
    progress: Progress | None = None
    reason: str | None = Field(default=None, max_length=4000)
    field: str | None = Field(default=None, max_length=500, description="Offending field.")
    error_type: ErrorType | None = None
    log_tail: str | None = Field(default=None, max_length=20000)
    result: Result | None = None
    sweep_id: Identifier | None = None
