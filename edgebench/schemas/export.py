"""Export the contract as JSON Schema files (kept in schemas/json/)."""

from __future__ import annotations

import json
from pathlib import Path

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


def schema(name: str) -> dict[str, object]:
    """The JSON Schema document of one message model, with its dialect and identity."""
    doc: dict[str, object] = {"$schema": DIALECT, "$id": f"{ID_BASE}{name}"}
    doc.update(MODELS[name].model_json_schema())
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
