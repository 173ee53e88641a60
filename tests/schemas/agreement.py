"""Do pydantic and a third-party JSON Schema validator (``jsonschema``) agree on a message?

Used by tests/schemas/test_json_schema.py and by the wire capture in
tests/conftest.py, which checks every message the test suite put on the
session broker, the fuzz tests' junk included, in both directions.

Known, documented gaps that JSON Schema cannot express (schemas/base.py,
docs/JOBS.md): a JSON number outside the range of a double (``1e400``: pydantic
refuses it, JSON Schema has no notion of range), a lone surrogate escape
(``"\\ud800"``: not Unicode text), and the cross-field rules stated only in
words (``warmup_epochs < workload.epochs`` in train mode; the inference
settings' minimum <= maximum). Messages that hit
one of them are not counted as disagreements.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import jsonschema

from edgebench.schemas.envelope import DecodeError, decode
from edgebench.schemas.export import MODELS, schema


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def parse_json(payload: bytes) -> Any:
    """Strict JSON: NaN and Infinity are not JSON; raises ValueError."""
    return json.loads(payload, parse_constant=_reject_constant)


@cache
def validator(name: str = "envelope") -> jsonschema.Draft202012Validator:
    doc = schema(name)
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _outside_json_schema(doc: Any) -> str | None:
    """Why a document's verdict may legitimately differ between the two, or None."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return "a number outside the range of a double"
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone surrogate"
        elif isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def breaks_stated_rule(job: Any) -> bool:
    """Whether a job document breaks a rule the schema states only in words (x-edgebench-rules)."""
    if not isinstance(job, dict):
        return False
    try:
        workload = job.get("workload")
        if (job.get("mode", "train") == "train" and isinstance(workload, dict)
                and job.get("warmup_epochs", 1) >= workload["epochs"]):
            return True
        inf = job.get("inference") or {}
        for low, high in (("min_duration_ms", "max_duration_ms"), ("min_query_count", "max_query_count")):
            if inf.get(low) is not None and inf.get(high) is not None and inf[high] < inf[low]:
                return True
    except (KeyError, TypeError, AttributeError):
        return False
    return False


def _breaks_stated_rule(doc: Any) -> bool:
    body = doc.get("body") if isinstance(doc, dict) else None
    return isinstance(body, dict) and body.get("kind") == "job" and breaks_stated_rule(body)


def verdicts(payload: bytes) -> tuple[bool, bool, str | None]:
    """(pydantic accepts, jsonschema accepts, why a difference does not count or None)."""
    try:
        decode(payload, max_bytes=1 << 30)
        pydantic_ok = True
    except DecodeError:
        pydantic_ok = False
    except RecursionError:
        return False, False, "nesting deeper than either parser goes"
    try:
        doc = parse_json(payload)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return pydantic_ok, False, None
    try:
        schema_ok = validator().is_valid(doc)
    except RecursionError:
        return pydantic_ok, False, "nesting deeper than either parser goes"
    excuse = _outside_json_schema(doc) or ("a rule stated in words" if _breaks_stated_rule(doc) else None)
    return pydantic_ok, schema_ok, excuse


def disagreement(payload: bytes) -> str | None:
    """A description of the disagreement, or None when both agree (or may differ)."""
    pydantic_ok, schema_ok, excuse = verdicts(payload)
    if pydantic_ok == schema_ok or excuse:
        return None
    side = "pydantic accepts, jsonschema rejects" if pydantic_ok else "jsonschema accepts, pydantic rejects"
    detail = ""
    if pydantic_ok:
        errors = sorted(validator().iter_errors(parse_json(payload)), key=lambda e: e.path)
        detail = "; ".join(f"{'.'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:3])
    else:
        try:
            decode(payload, max_bytes=1 << 30)
        except DecodeError as exc:
            detail = exc.reason[:300]
    return f"{side}: {detail} :: {payload[:300]!r}"


MODEL_NAMES = tuple(MODELS)
