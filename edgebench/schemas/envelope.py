"""The versioned envelope around every message, and its codec."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError

from edgebench.schemas.base import StrictModel
from edgebench.schemas.events import JobEvent
from edgebench.schemas.job import CancelRequest, JobSpec
from edgebench.schemas.status import AgentStatus

SCHEMA_VERSION: Final = "edgebench/v1"

Body = Annotated[JobSpec | CancelRequest | JobEvent | AgentStatus, Field(discriminator="kind")]


class Envelope(StrictModel):
    schema_version: Literal["edgebench/v1"] = SCHEMA_VERSION
    msg_id: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    sent_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    sender: str = Field(max_length=128)
    body: Body
    signature: str | None = Field(
        default=None, max_length=200, description="Base64 Ed25519 signature of the body JSON."
    )


class DecodeError(ValueError):
    """A message could not be decoded; ``field`` names what was wrong."""

    def __init__(self, reason: str, field: str | None = None, job_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.job_id = job_id


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=False).encode()


def decode(payload: bytes, max_bytes: int = 256 * 1024) -> Envelope:
    """Parse and validate untrusted bytes into an Envelope, or raise DecodeError."""
    if len(payload) > max_bytes:
        raise DecodeError(f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte cap", "payload")
    try:
        return Envelope.model_validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        parts = [str(p) for p in err["loc"]]
        if len(parts) >= 2 and parts[0] == "body" and parts[1] in {"job", "cancel", "event", "status"}:
            parts = parts[2:]  # drop the discriminator tag: "body.job.x" -> "x"
        loc = ".".join(parts)
        raise DecodeError(f"{loc}: {err['msg']}" if loc else err["msg"], loc or "payload",
                          _guess_job_id(payload)) from None


def _guess_job_id(payload: bytes) -> str | None:
    """Best effort to echo the job id of an invalid job, so the sender can match the REJECTED."""
    import json

    try:
        doc = json.loads(payload)
        job_id = doc["body"]["job_id"]
    except Exception:
        return None
    return job_id[:200] if isinstance(job_id, str) else None
