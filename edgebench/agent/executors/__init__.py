"""Executors start a runner for a job: ``local`` (an interpreter on this host,
executors/local.py) and ``docker`` (a runner image through the Docker SDK,
executors/docker.py, with its engine-free rules in docker_rules.py). Whatever
starts the runner, the agent sees the same thing (executors/base.py): a
RunnerProcess with a stream of protocol lines, a way to kill everything it
started, the tail of its stderr, and the container it ran in, if any.

Modules import base (docker also docker_rules), never this package; the docker
module is imported only for a docker backend (it needs the ``docker`` extra to
start containers, not to be imported).
"""

from __future__ import annotations

from pathlib import Path

from edgebench.agent.config import BackendConfig, LocalBackend
from edgebench.agent.executors.base import (
    ContainerRef,
    Executor,
    ExecutorError,
    RunnerProcess,
    install_runner_code,
)
from edgebench.agent.executors.local import LocalExecutor

__all__ = ["ContainerRef", "Executor", "ExecutorError", "LocalExecutor", "RunnerProcess", "install_runner_code",
           "make_executor"]


def make_executor(cfg: BackendConfig, runner_home: Path, allowlist: list[str]) -> Executor:
    """The executor for one configured backend; ExecutorError if it cannot be
    used here (the agent then announces the backend unavailable, with the
    reason, and rejects its jobs naming ``backend``)."""
    if isinstance(cfg, LocalBackend):
        return LocalExecutor(cfg, runner_home)
    from edgebench.agent.executors.docker import DockerExecutor
    from edgebench.agent.executors.docker_rules import image_allowed

    if not image_allowed(cfg.image, allowlist):
        # checked here too, not only inside the docker executor: a config
        # mistake must never start an image the operator did not allow
        raise ExecutorError(f"image {cfg.image!r} is not in image_allowlist")
    try:
        import docker  # noqa: F401 - the docker extra
    except ImportError as exc:
        raise ExecutorError(f"the docker executor cannot load: {exc}") from None
    return DockerExecutor(cfg, runner_home, allowlist)
