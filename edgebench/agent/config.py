"""The agent's configuration. The model is shared with the controller (which renders
agent.yaml for ``controller deploy``), so it lives in edgebench/common/agentconfig.py;
this module is its name on the agent's side."""

from __future__ import annotations

from edgebench.common.agentconfig import (
    DEFAULT_BACKENDS,
    AgentConfig,
    AgentSettings,
    BackendConfig,
    DockerBackend,
    LocalBackend,
    default_state_dir,
)

__all__ = ["DEFAULT_BACKENDS", "AgentConfig", "AgentSettings", "BackendConfig", "DockerBackend", "LocalBackend",
           "default_state_dir"]
