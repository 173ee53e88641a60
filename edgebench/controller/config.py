"""The controller's one typed configuration object."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edgebench.controller.store import default_store_url
from edgebench.schemas.base import Identifier


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("edgebench")) / "controller.yaml"


class ControllerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker_url: str = "mqtt://127.0.0.1:1883"
    fleet: Identifier = "default"
    store_url: str = Field(default_factory=default_store_url)
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    signing_key: Path | None = None  # Ed25519 private key: sign every job
    job_expiry_s: int = 24 * 3600  # jobs not picked up by then lapse (MQTT 5 message expiry)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> ControllerConfig:
        data: dict[str, object] = {}
        path = path or (Path(os.environ["EDGEBENCH_CONFIG"]) if "EDGEBENCH_CONFIG" in os.environ else None)
        if path is None and default_config_path().exists():
            path = default_config_path()
        if path is not None:
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping at the top level")
            data.update(loaded)
        for key, env in (("broker_url", "EDGEBENCH_BROKER"), ("store_url", "EDGEBENCH_STORE"),
                         ("fleet", "EDGEBENCH_FLEET")):
            if env in os.environ:
                data[key] = os.environ[env]
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
