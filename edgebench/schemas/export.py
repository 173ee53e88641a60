"""Export the contract as JSON Schema files (kept in schemas/json/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgebench.schemas.envelope import Envelope
from edgebench.schemas.events import JobEvent
from edgebench.schemas.job import CancelRequest, JobSpec, ReplayRequest
from edgebench.schemas.result import Result
from edgebench.schemas.status import AgentStatus

MODELS: dict[str, type[BaseModel]] = {
    "envelope": Envelope,
    "job": JobSpec,
    "cancel": CancelRequest,
    "replay": ReplayRequest,
    "event": JobEvent,
    "result": Result,
    "status": AgentStatus,
}


DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "urn:edgebench:schema:v1:"  # stable identifiers, independent of where the files are hosted


# pydantic exports a bound as "ge"/"le" (not JSON Schema keywords, so ignored by
# every validator) when it sits behind a BeforeValidator (schemas.base.Int): rename.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _json_schema_bounds(node: Any, in_properties: bool = False) -> Any:
    if isinstance(node, list):
        return [_json_schema_bounds(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        key = str(key)
        value = _json_schema_bounds(value, key == "properties" and not in_properties)
        name: str = key if in_properties else _BOUNDS.get(key, key)
        if name in out and name != key:  # a field's own bound beside its type's: keep the stricter
            value = min(out[name], value) if name.startswith(("maximum", "exclusiveMaximum")) else max(out[name],
                                                                                                       value)
        elif key in _BOUNDS.values() and key in out and not in_properties:
            value = min(out[key], value) if key.startswith(("maximum", "exclusiveMaximum")) else max(out[key], value)
        out[name] = value
    return out


def _body_kind_required(doc: dict[str, Any]) -> None:
    """Inside an envelope the body's ``kind`` tells its type: pydantic needs it there
    (a discriminated union), although each body model alone defaults it."""
    defs = doc.get("$defs", {})
    for name in ("JobSpec", "CancelRequest", "ReplayRequest", "JobEvent", "AgentStatus"):
        model = defs.get(name)
        if model is not None and "kind" in model.get("properties", {}):
            model["required"] = sorted({*model.get("required", []), "kind"})


def schema(name: str) -> dict[str, object]:
    """The JSON Schema document of one message model, with its dialect and identity."""
    doc: dict[str, Any] = {"$schema": DIALECT, "$id": f"{ID_BASE}{name}"}
    doc.update(_json_schema_bounds(MODELS[name].model_json_schema()))
    if name == "envelope":
        _body_kind_required(doc)
    return doc


def render() -> dict[str, str]:
    """File name -> JSON text, deterministic."""
    return {
        f"{name}.schema.json": json.dumps(schema(name), indent=2, sort_keys=True) + "\n"
        for name in MODELS
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
