"""The exported JSON Schema and the pydantic models agree, both ways.

The JSON Schema in edgebench/schemas/json is the contract other implementations
and tools use; pydantic is what edgebench itself enforces. Checked here with a
third-party validator (``jsonschema``, Draft 2020-12, formats checked):

- every document is a valid schema with ``$schema`` and ``$id``;
- cases a hostile review found disagreeing (2026-12-01): ``batch_size: 32.0``,
  a job id ``abc\\n``, a naive datetime, a missing ``schema_version``;
- messages generated from the schema (hypothesis-jsonschema) that pydantic
  must accept;
- and, in tests/conftest.py, every message the suite put on the session broker.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis_jsonschema import from_schema

from edgebench.schemas import CancelRequest, Envelope, JobSpec, ReplayRequest
from edgebench.schemas.envelope import DecodeError, decode, encode
from edgebench.schemas.export import ID_BASE, schema
from tests.helpers import sleep_job
from tests.schemas.agreement import MODEL_NAMES, breaks_stated_rule, disagreement, validator, verdicts


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_file_is_a_valid_identified_schema(name: str) -> None:
    doc = schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"{ID_BASE}{name}"
    validator(name)  # check_schema


def _job_doc(**body: Any) -> dict[str, Any]:
    doc = json.loads(encode(Envelope.of(sender="controller", body=sleep_job("j1"))))
    doc["body"].update(body)
    return doc


def _both(doc: dict[str, Any]) -> tuple[bool, bool]:
    pydantic_ok, schema_ok, _ = verdicts(json.dumps(doc).encode())
    return pydantic_ok, schema_ok


def test_a_whole_number_written_as_a_float_is_an_integer_to_both() -> None:
    doc = _job_doc()
    doc["body"]["workload"]["batch_size"] = 32.0
    assert _both(doc) == (True, True)
    assert decode(json.dumps(doc).encode()).body.workload.batch_size == 32  # type: ignore[union-attr]
    doc["body"]["workload"]["batch_size"] = 32.5
    assert _both(doc) == (False, False)


@pytest.mark.parametrize("job_id", ["abc\n", "abc\r\n", "\nabc", "a b", "../x", ".x", "a/b", "x" * 65, ""])
def test_a_job_id_with_a_newline_or_path_is_refused_by_both(job_id: str) -> None:
    assert _both(_job_doc(job_id=job_id)) == (False, False)


@pytest.mark.parametrize("at", ["2026-12-01T10:00:00", "2026-12-01", "1700000000"])
def test_a_datetime_without_zone_is_refused_by_both(at: str) -> None:
    doc = _job_doc()
    doc["sent_at"] = at
    assert _both(doc) == (False, False)
    doc["sent_at"] = "2026-12-01T10:00:00+01:00"
    assert _both(doc) == (True, True)


def test_schema_version_is_required_by_both() -> None:
    doc = _job_doc()
    del doc["schema_version"]
    assert _both(doc) == (False, False)
    doc["schema_version"] = "edgebench/v2"
    assert _both(doc) == (False, False)


def test_cross_field_rules_are_in_the_schema_and_name_their_field() -> None:
    fraction = _job_doc(memory_policy="fraction")
    assert _both(fraction) == (False, False)
    with pytest.raises(DecodeError) as exc:
        decode(json.dumps(fraction).encode())
    assert exc.value.field == "memory_fraction"
    warm = _job_doc(warmup_epochs=5)
    with pytest.raises(DecodeError) as exc:
        decode(json.dumps(warm).encode())
    assert exc.value.field == "warmup_epochs" and "workload.epochs" in exc.value.reason
    unknown = _job_doc(kind="jobz")
    with pytest.raises(DecodeError) as exc:
        decode(json.dumps(unknown).encode())
    assert exc.value.field == "body.kind"
    assert _both(unknown) == (False, False)


def test_integers_beyond_the_stores_are_refused_by_both() -> None:
    from edgebench.schemas import JobEvent, JobState

    ev = JobEvent(job_id="j1", device_id="box", seq=0, state=JobState.QUEUED, at=datetime.now(timezone.utc))
    doc = json.loads(encode(Envelope.of(sender="box", body=ev)))
    for name, value in (("seq", 2**63), ("seq", 2**31), ("attempt", 2**64), ("seq", -1)):
        bad = json.loads(json.dumps(doc))
        bad["body"][name] = value
        assert _both(bad) == (False, False), (name, value)


def _local(doc: dict[str, Any]) -> dict[str, Any]:
    """hypothesis-jsonschema resolves "#/$defs/..." against $id and fetches nothing: drop $id."""
    return {k: v for k, v in doc.items() if k != "$id"}


_SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.filter_too_much])


@pytest.mark.parametrize("model", [JobSpec, CancelRequest, ReplayRequest], ids=lambda m: m.__name__)
def test_messages_generated_from_the_schema_are_accepted(model: type) -> None:
    name = {JobSpec: "job", CancelRequest: "cancel", ReplayRequest: "replay"}[model]
    strategy = from_schema(_local(schema(name)))

    @_SLOW
    @given(strategy)
    def accepted(doc: dict[str, Any]) -> None:
        if name == "job":
            assume(not breaks_stated_rule(doc))
        model.model_validate_json(json.dumps(doc))

    accepted()


def _envelopes(kind: str) -> Any:
    """Envelopes with a body of one kind: header and body generated from their own
    schemas and put together (generating from the envelope's whole union, results
    included, takes minutes)."""
    from hypothesis import strategies as st

    envelope = schema("envelope")
    header = {"type": "object", "additionalProperties": False,
              "properties": {k: v for k, v in envelope["properties"].items() if k != "body"},  # type: ignore[union-attr]
              "required": [r for r in envelope["required"] if r != "body"]}  # type: ignore[union-attr]
    return st.tuples(from_schema(header), from_schema(_local(schema(kind)))).map(
        lambda hb: {**hb[0], "body": {**hb[1], "kind": kind}})


@pytest.mark.parametrize("kind", ["job", "cancel", "replay", "status"])
def test_envelopes_generated_from_the_schema_are_accepted(kind: str) -> None:
    @_SLOW
    @given(_envelopes(kind))
    def accepted(doc: dict[str, Any]) -> None:
        problem = disagreement(json.dumps(doc).encode())
        assert problem is None, problem

    accepted()
