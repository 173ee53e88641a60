"""Export the contract as JSON Schema files (kept in schemas/json/)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from edgebench.schemas.envelope import Envelope
from edgebench.schemas.events import JobEvent
from edgebench.schemas.job import CancelRequest, JobSpec
from edgebench.schemas.result import Result
from edgebench.schemas.status import AgentStatus

MODELS: dict[str, type[BaseModel]] = {
    "envelope": Envelope,
    "job": JobSpec,
    "cancel": CancelRequest,
    "event": JobEvent,
    "result": Result,
    "status": AgentStatus,
}


def render() -> dict[str, str]:
    """File name -> JSON text, deterministic."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in MODELS.items()
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
