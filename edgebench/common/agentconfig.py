"""The agent's one typed configuration object: the document agent.yaml holds.

It lives in common because both sides read it: the agent runs with it, and
``controller deploy`` renders and validates each box's agent.yaml before it
ships it (the controller never imports the agent). edgebench/agent/config.py
re-exports it for the agent's code. Loading (flags, environment, secret files,
YAML) is edgebench/common/settings.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgebench.common.settings import FileSettings
from edgebench.schemas.base import Identifier


class LocalBackend(BaseModel):
    """Run the runner with a given interpreter on this host."""

    model_config = ConfigDict(extra="forbid")
    executor: Literal["local"] = "local"
    python: str = Field(default_factory=lambda: sys.executable)
    env: dict[str, str] = Field(default_factory=dict)


class DockerBackend(BaseModel):
    """Run the runner in a container image through the Docker SDK."""

    model_config = ConfigDict(extra="forbid")
    executor: Literal["docker"] = "docker"
    image: str
    env: dict[str, str] = Field(default_factory=dict)
    cpus: float | None = None
    mem_limit: str | None = None
    shm_size: str = "1g"


BackendConfig = LocalBackend | DockerBackend

DEFAULT_BACKENDS = ("keras-jax", "keras-torch", "keras-tensorflow", "torch", "jax", "sleep",
                    "onnxruntime", "openvino", "litert")  # the inference runtimes: docs/INFERENCE.md


def _default_backends() -> dict[str, BackendConfig]:
    return {name: LocalBackend() for name in DEFAULT_BACKENDS}


def default_state_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgebench-agent"))


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker_url: str = "mqtt://127.0.0.1:1883"
    device_id: Identifier
    fleet: Identifier = "default"
    tags: list[Identifier] = Field(default_factory=list)
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    state_dir: Path = Field(default_factory=default_state_dir)
    dataset_root: Path = Field(default_factory=lambda: Path.home() / "edgebench-data")
    backends: dict[str, BackendConfig] = Field(default_factory=lambda: _default_backends())
    image_allowlist: list[str] = Field(default_factory=list)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    # Mosquitto disconnects a client that publishes over its message_size_limit
    # (1 MiB in deploy/mosquitto): events over this are trimmed (agent/eventsize.py)
    max_event_bytes: int = Field(default=900_000, ge=4096)
    telemetry: Literal["auto", "nvml", "jetson", "none"] = "auto"
    sample_interval_s: float = Field(default=0.1, gt=0, le=60)
    nvml_read_plan: Literal["full", "lean"] = Field(
        default="lean",
        description="NVML readings taken every tick. 'lean': all but the total-energy counter, which is "
        "read at window edges and every 5 s (it costs 4.4 ms of CPU per read on a virtualised H200); "
        "'full': the counter every tick too. docs/TELEMETRY.md has the measured costs.",
    )
    metrics_port: int | None = None
    metrics_addr: str = Field(default="0.0.0.0", description="Address /metrics binds to (127.0.0.1: this box only).")
    metrics_cert_file: str | None = Field(default=None, description="HTTPS for /metrics: certificate (PEM).")
    metrics_key_file: str | None = Field(default=None, description="HTTPS for /metrics: private key (PEM).")
    metrics_client_ca_file: str | None = Field(
        default=None, description="HTTPS for /metrics: require scraper certificates signed by this CA.")
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    # users' model files (JobSpec.model_artifact; docs/MODELS.md, agent/artifacts.py)
    artifact_cache_dir: Path | None = Field(
        default=None, description="Where delivered model files are cached by digest (the runner's model cache); "
        "default <state_dir>/models.")
    max_artifact_bytes: int = Field(default=500 * 1000**2, ge=1, description="The largest model file accepted.")
    artifact_cache_max_bytes: int = Field(
        default=5 * 1000**3, ge=1, description="Delivered files kept, least recently used evicted first.")
    artifact_shared_dir: Path | None = Field(
        default=None, description="A shared copy of the controller's artifact directory (delivery 'directory').")
    artifact_ca_file: str | None = Field(
        default=None, description="CA for the artifact server's or registry's HTTPS; default ca_file.")
    artifact_fetch_attempts: int = Field(default=4, ge=1, le=20)
    artifact_fetch_backoff_s: float = Field(default=1.0, ge=0, le=600, description="Doubles after each attempt.")
    artifact_fetch_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Per connect and per read.")
    job_public_key: Path | None = None  # when set, unsigned or altered jobs, cancels and replays are rejected
    retention_s: float = Field(
        default=30 * 24 * 3600, ge=3600,
        description="How long the agent keeps each job's state-change events (and results) for a controller's "
        "reconciliation after it lost events (docs/JOBS.md).")
    status_interval_s: float = 60.0
    concurrent_per_gpu: bool = False
    allow_power_mode: bool = Field(
        default=False,
        description="Jetson: let jobs set the nvpmodel power mode (JobSpec.power_mode); the agent restores "
        "the previous mode after each job. Needs root (nvpmodel writes sysfs). docs/JETSON.md.",
    )
    gpu_indices: list[int] | None = Field(
        default=None,
        description="GPUs (NVML indices) this agent may use; default all. "
        "Pin one agent per GPU to run one job per GPU on a multi-GPU box.",
    )

    @classmethod
    def load(cls, path: Path | None = None, secrets_dir: Path | None = None, **flags: object) -> AgentConfig:
        """From flags, ``EDGEBENCH_*`` variables, secret files and the YAML file, in that order of precedence
        (edgebench/common/settings.py)."""
        return AgentSettings.load(path, secrets_dir, **flags)


class AgentSettings(FileSettings, AgentConfig):
    """AgentConfig as pydantic-settings loads it; an instance is an AgentConfig."""

    model_config = FileSettings.model_config  # with the model's own (pydantic merges them)

    ENV_ALIASES: ClassVar[dict[str, str]] = {"EDGEBENCH_BROKER": "broker_url", "EDGEBENCH_FLEET": "fleet"}
