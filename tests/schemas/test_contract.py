"""The message contract: strict, versioned, exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgebench.schemas import Backend, Envelope, InputPlacement, JobSpec, MemoryPolicy, Workload
from edgebench.schemas.envelope import DecodeError, decode, encode
from edgebench.schemas.export import render

REPO = Path(__file__).resolve().parents[2]


def _job(**kw: object) -> JobSpec:
    wl = Workload(model="mlp", dataset="fashion_mnist", batch_size=32, epochs=2, optimizer="adam", learning_rate=1e-3)
    return JobSpec(job_id="j1", backend=Backend.KERAS_JAX, workload=wl, **kw)  # type: ignore[arg-type]


def test_roundtrip() -> None:
    env = Envelope.of(sender="ctl", body=_job())
    assert decode(encode(env)) == env


def test_unknown_fields_and_wrong_types_are_errors() -> None:
    with pytest.raises(ValidationError):
        Workload(model="mlp", dataset="fashion_mnist", batch_size="32", epochs=2, optimizer="adam",  # type: ignore[arg-type]
                 learning_rate=1e-3)
    doc = json.loads(encode(Envelope.of(sender="ctl", body=_job())))
    doc["body"]["extra"] = True
    with pytest.raises(DecodeError) as exc:
        decode(json.dumps(doc).encode())
    assert exc.value.field == "extra"
    assert exc.value.job_id == "j1"


def test_identifiers_cannot_carry_topic_characters() -> None:
    for bad in ("a/b", "+", "#", "../x", ""):
        with pytest.raises(ValidationError):
            _job().model_validate({**_job().model_dump(), "job_id": bad})


def test_warmup_must_leave_a_measured_epoch() -> None:
    with pytest.raises(ValidationError, match="warmup_epochs"):
        _job(warmup_epochs=2)


def test_memory_fraction_required_with_fraction_policy() -> None:
    with pytest.raises(ValidationError, match="memory_fraction"):
        _job(memory_policy=MemoryPolicy.FRACTION)


def test_input_knob_is_host_device_or_absent() -> None:
    assert _job().input is None  # the backend's default; older jobs carry no field
    wire = _job().model_dump(mode="json")
    assert JobSpec.model_validate_json(json.dumps({**wire, "input": "device"})).input is InputPlacement.DEVICE
    with pytest.raises(ValidationError, match="input"):
        JobSpec.model_validate_json(json.dumps({**wire, "input": "gpu"}))


def test_oversized_payload_rejected_before_parsing() -> None:
    with pytest.raises(DecodeError) as exc:
        decode(b"{" + b" " * 2000 + b"}", max_bytes=1000)
    assert exc.value.field == "payload"


def test_exported_json_schema_is_current() -> None:
    exported = REPO / "edgebench" / "schemas" / "json"
    for name, text in render().items():
        path = exported / name
        assert path.exists(), f"{path} missing: run `controller schema export schemas/json`"
        assert path.read_text() == text, f"{path} is stale: run `controller schema export schemas/json`"
