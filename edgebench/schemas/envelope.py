"""The versioned envelope around every message, and its codec."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationError

from edgebench.schemas.base import IDENTIFIER_PATTERN, MSG_ID_PATTERN, MessageId, StrictModel, Timestamp
from edgebench.schemas.events import JobEvent
from edgebench.schemas.job import CancelRequest, JobSpec, ReplayRequest
from edgebench.schemas.status import AgentStatus

SCHEMA_VERSION: Final = "edgebench/v1"

Body = Annotated[JobSpec | CancelRequest | ReplayRequest | JobEvent | AgentStatus, Field(discriminator="kind")]
BODY_KINDS: Final = ("job", "cancel", "replay", "event", "status")


class Envelope(StrictModel):
    """Every message on the broker. ``schema_version`` is required: a message
    without it is refused rather than guessed to be v1. Build one with
    :meth:`Envelope.of`."""

    schema_version: Literal["edgebench/v1"]
    msg_id: MessageId = Field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: Timestamp = Field(default_factory=lambda: datetime.now(timezone.utc))
    sender: str = Field(max_length=128)
    body: Body
    signature: str | None = Field(
        default=None, max_length=200, description="Base64 Ed25519 signature of the body JSON."
    )

    @classmethod
    def of(cls, sender: str, body: Any, **fields: Any) -> Envelope:
        return cls(schema_version=SCHEMA_VERSION, sender=sender, body=body, **fields)


class DecodeError(ValueError):
    """A message could not be decoded; ``field`` names what was wrong.

    ``job_id`` and ``msg_id`` echo the message's own ids only where they are
    well-formed (an identifier, a message id): never untrusted text."""

    def __init__(self, reason: str, field: str | None = None, job_id: str | None = None,
                 msg_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.job_id = job_id
        self.msg_id = msg_id


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=False).encode()


def decode(payload: bytes, max_bytes: int = 256 * 1024) -> Envelope:
    """Parse and validate untrusted bytes into an Envelope, or raise DecodeError."""
    if len(payload) > max_bytes:
        raise DecodeError(f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte cap", "payload",
                          None, None)  # not even parsed: nothing to echo
    try:
        return Envelope.model_validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = error_location(err)
        raise DecodeError(f"{loc}: {err['msg']}" if loc else err["msg"], loc or "payload",
                          *_guess_ids(payload)) from None


def error_location(err: Any) -> str:
    """The field a pydantic error is about, as the sender wrote it: ``workload.batch_size``.

    The body's discriminator tag is dropped ("body.job.x" -> "x"); a missing or
    unknown tag is about ``body.kind``."""
    parts = [str(p) for p in err["loc"]]
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and parts[:1] == ["body"]:
        return "body.kind"
    if len(parts) >= 2 and parts[0] == "body" and parts[1] in BODY_KINDS:
        parts = parts[2:]
    # a plain union's member ("workload.dataset.literal['fashion_mnist',...]") is not part of the field
    return ".".join(p for p in parts if not _UNION_MEMBER.match(p))


_UNION_MEMBER = re.compile(r"^(literal|function-(after|before|wrap|plain)|constrained-\w+|nullable|lax-or-strict|"
                           r"json-or-python|union|tagged-union|chain)\[.*\]$", re.S)


_ID = re.compile(IDENTIFIER_PATTERN)
_MSG_ID = re.compile(MSG_ID_PATTERN)


def _guess_ids(payload: bytes) -> tuple[str | None, str | None]:
    """Best effort to echo the job id and msg_id of an invalid message, so that the
    sender can match the REJECTED answer; only well-formed ids are echoed."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    body = doc.get("body")
    job_id = body.get("job_id") if isinstance(body, dict) else None
    msg_id = doc.get("msg_id")
    return (job_id if isinstance(job_id, str) and _ID.search(job_id) else None,
            msg_id if isinstance(msg_id, str) and _MSG_ID.search(msg_id) else None)
