"""Shared base model and constrained types.

The JSON Schema exported from these models (edgebench/schemas/json) is the
contract other implementations validate against, so every constraint here is
one that both pydantic and a standard JSON Schema validator enforce the same
way (tests/schemas/test_json_schema.py checks both directions):

- an identifier never ends in a newline: pydantic's (Rust) ``$`` matches only
  at the very end, but Python's ``re`` (which the ``jsonschema`` package uses)
  also matches before a trailing newline, so the exported pattern adds
  ``(?![\\s\\S])`` (nothing may follow), which ECMA-262 and Python agree on;
- integers accept a JSON number with no fraction (``32.0``), as JSON Schema's
  "integer" does, and never a string or a boolean;
- no NaN or infinity (JSON has neither);
- every integer is bounded by what the stores hold: ``MAX_INT32`` for values
  that land in an INTEGER column (PostgreSQL's INTEGER is 32-bit), ``MAX_INT64``
  for counts kept inside stored JSON (SQLite's INTEGER is 64-bit).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1

# Identifiers travel inside MQTT topics and file names: keep them to a safe
# alphabet so that no message can smuggle '/', '+', '#', '..', a newline or a
# control character into either.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Message ids (uuid4 hex by default) are echoed in answers (JobEvent.in_reply_to).
MSG_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def exact_pattern_schema(pattern: str) -> WithJsonSchema:
    """The exported schema of a string matching ``pattern`` exactly (see the module docstring about ``$``)."""
    return WithJsonSchema({"type": "string", "pattern": pattern + r"(?![\s\S])"})


Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN), exact_pattern_schema(IDENTIFIER_PATTERN)]
SHA256_PATTERN = r"^[0-9a-f]{64}$"
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN), exact_pattern_schema(SHA256_PATTERN)]
MessageId = Annotated[str, StringConstraints(pattern=MSG_ID_PATTERN), exact_pattern_schema(MSG_ID_PATTERN)]


def _integral(value: Any) -> Any:
    """32.0 -> 32 (JSON Schema's "integer" accepts it); anything else unchanged, for strict checking."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# (the bounds come before the validator: after it, pydantic exports them as "ge"/"le",
# which JSON Schema does not know, instead of "minimum"/"maximum")
Int = Annotated[int, BeforeValidator(_integral)]
Int32 = Annotated[int, Field(ge=-MAX_INT32 - 1, le=MAX_INT32), BeforeValidator(_integral)]
Count32 = Annotated[int, Field(ge=0, le=MAX_INT32), BeforeValidator(_integral)]
Count64 = Annotated[int, Field(ge=0, le=MAX_INT64), BeforeValidator(_integral)]


# RFC 3339 date-time with an offset, as JSON Schema's "date-time" format: pydantic
# alone would also take a space separator or a string of epoch seconds.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-12-01T10:00:00Z")
    return value


# Strict(False): the validator above has already allowed only an RFC 3339 string or
# a datetime; strict mode would then refuse the string (it arrives as Python text).
Timestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_rfc3339)]


class StrictModel(BaseModel):
    """Unknown fields and type coercion are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
