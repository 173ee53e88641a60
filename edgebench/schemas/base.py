"""Shared base model and constrained types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# Identifiers travel inside MQTT topics and file names: keep them to a safe
# alphabet so that no message can smuggle '/', '+', '#' or '..' into either.
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
]


class StrictModel(BaseModel):
    """Unknown fields and type coercion are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
