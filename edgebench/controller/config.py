"""The controller's one typed configuration object, and how it is loaded.

Every field can come from a flag, an ``EDGEBENCH_<FIELD>`` variable, a secret
file (``edgebench_password`` in /run/secrets) or the YAML file (``--config``,
``EDGEBENCH_CONFIG``, else controller.yaml in the user's config directory), in
that order of precedence: edgebench/common/settings.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgebench.common.settings import FileSettings
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
    # users' model files (docs/MODELS.md): where the registry keeps them and how agents get them
    artifact_dir: Path | None = None  # default: the user data dir's edgebench/artifacts
    artifact_delivery: Literal["http", "directory", "oci"] = "http"
    artifact_url: str | None = None  # the base URL agents reach; default http(s)://<this host's FQDN>:<port>
    artifact_addr: str = "0.0.0.0"
    artifact_port: int = Field(default=8650, ge=0, le=65535)
    artifact_cert_file: str | None = None  # HTTPS for the artifact server: certificate (PEM) ...
    artifact_key_file: str | None = None  # ... and its key
    artifact_url_key: Path | None = None  # HMAC key of the per-job URLs; default <artifact_dir>/url-hmac.key
    # a URL must outlive the job's wait in the broker (job_expiry_s, 24 h) and its queue on the agent
    artifact_url_ttl_s: int = Field(default=3 * 24 * 3600, ge=60)
    # the team store (delivery 'oci'): an OCI registry with token auth, this controller the token issuer
    artifact_oci_url: str | None = None  # https://registry.plant.local:5000
    artifact_oci_prefix: str = "edgebench/models"  # repositories are <prefix>/<model name>
    artifact_oci_token_key: Path | None = None  # ES256 key whose certificate is the registry's rootcertbundle
    artifact_oci_token_cert: Path | None = None
    artifact_oci_issuer: str = "edgebench-controller"  # the registry's auth.token.issuer
    artifact_oci_service: str = "edgebench-registry"  # the registry's auth.token.service
    artifact_oci_ca_file: str | None = None  # CA of the registry's HTTPS certificate

    @classmethod
    def load(cls, path: Path | None = None, secrets_dir: Path | None = None, **flags: object) -> ControllerConfig:
        return ControllerSettings.load(path, secrets_dir, **flags)


class ControllerSettings(FileSettings, ControllerConfig):
    """ControllerConfig as pydantic-settings loads it; an instance is a ControllerConfig."""

    model_config = FileSettings.model_config  # with the model's own (pydantic merges them)

    # the names earlier releases read, kept as aliases below EDGEBENCH_BROKER_URL etc.
    ENV_ALIASES: ClassVar[dict[str, str]] = {"EDGEBENCH_BROKER": "broker_url", "EDGEBENCH_STORE": "store_url",
                                             "EDGEBENCH_FLEET": "fleet"}

    @classmethod
    def default_path(cls) -> Path | None:
        path = default_config_path()
        return path if path.exists() else None
