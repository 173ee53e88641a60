"""The ``docker`` executor: each job runs in its backend's runner image,
started through the Docker SDK.

A runner container gets exactly what a job needs and nothing more:

* the job directory (read-only) at /edgebench/job and the dataset root
  (read-only) at /edgebench/datasets;
* the GPUs the agent chose for the job, as a device request (the NVIDIA
  container toolkit renumbers them from 0 inside the container);
* no network (``network_mode="none"``): runners read local files only;
* the host's PID namespace (``pid_mode="host"``), so that NVML, which reports
  per-process GPU memory by host PID, can be matched to the runner's processes;
* CPU, memory and shared-memory limits from the backend's configuration, no
  capabilities, and no privilege escalation. (The engine adds no init process
  when the PID namespace is the host's; removing the container kills every
  process in its cgroup, the workers a framework started included.)

Only images on the agent's ``image_allowlist`` run. A backend configured with
another image is reported unavailable by ``probe()`` (so the agent REJECTs its
jobs with the reason), refused by ``start()``, and :func:`check_job_image` gives
the daemon the same answer as a Rejection.

When the agent itself runs in a container (docs/DEPLOY.md), the paths it sees
are not the paths the Docker engine sees. The executor inspects its own
container and translates job and dataset paths through its mounts, so runner
containers bind the right host directories.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from edgebench.agent.config import DockerBackend
from edgebench.agent.executors.base import ContainerRef, Executor, ExecutorError, RunnerProcess, bounded_chunk_lines
from edgebench.agent.executors.docker_rules import (  # noqa: F401 - the rules, importable from here too
    ImageNotAllowed,
    check_image_allowed,
    check_job_image,
    frameworks_from_label,
    gpu_request,
    image_allowed,
    image_digest,
    normalize_image_ref,
)
from edgebench.schemas import BackendInfo

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

log = logging.getLogger(__name__)

JOB_MOUNT = "/edgebench/job"
DATASET_MOUNT = "/edgebench/datasets"
MODEL_MOUNT = "/edgebench/models"  # the job's own model file, and nothing else of the cache (docs/MODELS.md)
MODEL_CACHE_ENV = "EDGEBENCH_MODEL_CACHE"
RUNNER_PATH = "/opt/edgebench"  # where the images put the runner package (images/*/Dockerfile*)
# Set by `controller deploy` on the agent container: its own name, for path translation.
SELF_CONTAINER_ENV = "EDGEBENCH_AGENT_CONTAINER"
ROLE_LABEL = "edgebench.role"
STATE_LABEL = "edgebench.agent-state"
_STDERR_TAIL_LINES = 2000
_CONTAINER_ID_RE = re.compile(r"/containers/([0-9a-f]{64})/")


# -- the runner process --------------------------------------------------------------
class DockerRunnerProcess(RunnerProcess):
    """A started runner container. Removed after it exits (wait) or when killed."""

    def __init__(self, container: Container, image_ref: str, digest: str):
        self._container = container
        self._ref = ContainerRef(image_ref, digest)
        self._lock = threading.Lock()
        self._stderr: str | None = None
        self._exit: int | None = None
        self._removed = False
        pid = container.attrs.get("State", {}).get("Pid") or 0
        self._pid: int | None = int(pid) or None

    @property
    def pid(self) -> int | None:
        """Host PID of the container's init process (its children are the runner)."""
        return self._pid

    @property
    def container_id(self) -> str:
        return str(self._container.id)

    def container(self) -> ContainerRef:
        """Which image, and exactly which build of it (the fingerprint records both)."""
        return self._ref

    def lines(self) -> Iterator[str]:
        import docker.errors
        import requests

        # stdout only: the protocol. stderr (framework noise) stays in the
        # container's log for the tail. The stream delivers chunks, not lines;
        # the log driver also splits lines longer than 16 KiB, which the
        # line splitter puts back together (up to the protocol's line limit).
        try:
            stream = self._container.logs(stdout=True, stderr=False, stream=True, follow=True)
            yield from bounded_chunk_lines(stream)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            # killed and removed under us, or the engine went away: end of stream
            log.debug("runner log stream ended: %s", exc)

    def wait(self, timeout_s: float | None = None) -> int:
        import docker.errors
        import requests

        if self._exit is not None:
            return self._exit
        try:
            status = self._container.wait(timeout=timeout_s)
        except requests.exceptions.ReadTimeout:
            raise TimeoutError(f"runner container still running after {timeout_s} s") from None
        except (docker.errors.NotFound, requests.exceptions.ConnectionError):
            self._exit = -9  # removed by kill()
            return self._exit
        self._exit = int(status.get("StatusCode", -1))
        self._remove()
        return self._exit

    def kill(self) -> None:
        self._remove()

    def stderr_tail(self, max_bytes: int = 8000) -> str:
        with self._lock:
            if self._stderr is None and not self._removed:
                self._stderr = self._fetch_stderr()
            return (self._stderr or "")[-max_bytes:]

    def _fetch_stderr(self) -> str:
        import docker.errors
        import requests

        try:
            raw = self._container.logs(stdout=False, stderr=True, tail=_STDERR_TAIL_LINES)
        except (docker.errors.DockerException, requests.RequestException):
            return ""
        return bytes(raw).decode("utf-8", "replace")

    def _remove(self) -> None:
        import docker.errors
        import requests

        with self._lock:
            if self._removed:
                return
            if self._stderr is None:
                self._stderr = self._fetch_stderr()
            try:
                self._container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.APIError, requests.RequestException) as exc:
                # "removal already in progress" and engine hiccups: the
                # container is going or will be swept by remove_stale_runners
                log.warning("could not remove runner container %s: %s", self._container.id, exc)
            self._removed = True


# -- the executor ------------------------------------------------------------------
class DockerExecutor(Executor):
    kind = "docker"

    def __init__(self, cfg: DockerBackend, runner_home: Path, allowlist: list[str],
                 client: docker.DockerClient | None = None):
        self.cfg = cfg
        # runner_home is the agent's copy of the runner code; runner images
        # carry their own (the image digest identifies the code that ran), so
        # it only serves to name this agent's runner containers.
        self.runner_home = runner_home
        self.allowlist = list(allowlist)
        self._client = client
        self._mounts: list[tuple[PurePosixPath, str]] | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise ExecutorError(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    # -- capabilities -------------------------------------------------------------
    def probe(self, backend: str) -> BackendInfo:
        import docker.errors
        import requests

        def unavailable(detail: str) -> BackendInfo:
            return BackendInfo(backend=backend, available=False, executor="docker", detail=detail)

        if not image_allowed(self.cfg.image, self.allowlist):
            return unavailable(f"image {self.cfg.image} is not on the agent's image_allowlist")
        try:
            image = self.client.images.get(self.cfg.image)
        except docker.errors.ImageNotFound:
            return unavailable(f"image {self.cfg.image} is not on this host "
                               "(docker pull it, or controller images build)")
        except (ExecutorError, docker.errors.DockerException, requests.RequestException) as exc:
            return unavailable(f"Docker engine: {exc}")
        labels = image.labels or {}
        built_for = labels.get("edgebench.backend")
        if built_for != backend:
            what = f"built for backend {built_for!r}" if built_for else "not an edgebench runner image"
            return unavailable(f"image {self.cfg.image} is {what} (label edgebench.backend)")
        versions = frameworks_from_label(labels.get("edgebench.frameworks", ""))
        versions["cuda"] = labels.get("edgebench.cuda", "unknown")
        if "edgebench.python" in labels:
            versions["python"] = labels["edgebench.python"]
        short = str(image.short_id).removeprefix("sha256:")
        # The framework is not asked (that would mean running the image); a CPU
        # image says so in its labels, and a GPU image's own runner checks at job start.
        cpu_only = labels.get("edgebench.cuda") == "none"
        return BackendInfo(backend=backend, available=True, executor="docker",
                           detail=f"{self.cfg.image} ({short})", versions=versions,
                           accelerators=0 if cpu_only else None,
                           accelerator_detail="a CPU-only image (label edgebench.cuda=none)" if cpu_only else
                           "not probed: the runner in the image checks the GPUs its framework sees at job start")

    # -- running ------------------------------------------------------------------
    def start(self, job_dir: Path, env: dict[str, str], dataset_root: Path) -> RunnerProcess:
        import docker.errors
        import requests
        from docker.types import LogConfig, Mount

        check_image_allowed(self.cfg.image, self.allowlist)
        try:
            image = self.client.images.get(self.cfg.image)
        except docker.errors.ImageNotFound:
            raise ExecutorError(f"image {self.cfg.image} is not on this host") from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ExecutorError(f"Docker engine: {exc}") from exc
        digest = image_digest(image)

        # The runner runs as the image's unprivileged user and only reads the
        # job directory; the agent may have created it private (0700).
        _readable(job_dir)

        device_requests, gpu_env = gpu_request(env)
        container_env = {**self.cfg.env, **env, **gpu_env, "PYTHONUNBUFFERED": "1"}
        if "PYTHONPATH" in container_env:  # the image's runner package must stay first
            container_env["PYTHONPATH"] = f"{RUNNER_PATH}:{container_env['PYTHONPATH']}"
        mounts = [Mount(JOB_MOUNT, self.host_path(job_dir), type="bind", read_only=True)]
        if dataset_root.is_dir():
            mounts.append(Mount(DATASET_MOUNT, self.host_path(dataset_root), type="bind", read_only=True))
        if env.get(MODEL_CACHE_ENV):
            # a user's model (JobRun verified it and holds it in the cache): only its own
            # digest's directory is mounted, read-only, where the runner's cache looks
            digest = job_model_digest(job_dir)
            model_dir = Path(env[MODEL_CACHE_ENV]) / "sha256" / digest
            _readable(model_dir)
            mounts.append(Mount(f"{MODEL_MOUNT}/sha256/{digest}", self.host_path(model_dir), type="bind",
                                read_only=True))
            container_env[MODEL_CACHE_ENV] = MODEL_MOUNT
        name = "edgebench-runner-" + re.sub(r"[^A-Za-z0-9_.-]", "-", job_dir.name)[:100]
        self._remove_named(name)
        try:
            container = self.client.containers.create(
                image.id,  # the id, not the tag: what runs is what the digest says
                command=["--job", f"{JOB_MOUNT}/job.json", "--dataset-root", DATASET_MOUNT],
                name=name,
                environment=container_env,
                mounts=mounts,
                device_requests=device_requests,
                pid_mode="host",
                network_mode="none",
                nano_cpus=int(self.cfg.cpus * 1e9) if self.cfg.cpus else None,
                mem_limit=self.cfg.mem_limit,
                shm_size=self.cfg.shm_size,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                labels={ROLE_LABEL: "runner", STATE_LABEL: self.host_path(self.runner_home.parent),
                        "edgebench.image": self.cfg.image, "edgebench.job-dir": str(job_dir)},
                # json-file with a cap: logs stay readable after exit (the
                # stderr tail) whatever the engine's default driver is
                log_config=LogConfig(type="json-file", config={"max-size": "20m", "max-file": "2"}),
            )
            container.start()
            container.reload()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            self._remove_named(name)
            raise ExecutorError(f"cannot start runner container from {self.cfg.image}: {exc}") from exc
        return DockerRunnerProcess(container, self.cfg.image, digest)

    def remove_stale_runners(self) -> int:
        """Remove runner containers left by an earlier life of this agent
        (a crash or power loss while a job ran). Returns how many."""
        import docker.errors
        import requests

        state = self.host_path(self.runner_home.parent)
        try:
            stale = self.client.containers.list(
                all=True, filters={"label": [f"{ROLE_LABEL}=runner", f"{STATE_LABEL}={state}"]})
            for container in stale:
                container.remove(force=True)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.warning("could not sweep stale runner containers: %s", exc)
            return 0
        return len(stale)

    def _remove_named(self, name: str) -> None:
        """Remove a leftover container of this name (an earlier attempt's)."""
        import docker.errors
        import requests

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.warning("could not remove leftover container %s: %s", name, exc)

    # -- paths as the engine sees them --------------------------------------------
    def host_path(self, path: Path) -> str:
        """``path`` as the Docker engine's host sees it: translated through the
        agent container's own mounts when the agent runs in a container."""
        target = PurePosixPath(os.path.abspath(path))
        for dest, source in self._own_mounts():
            if target == dest or dest in target.parents:
                return str(PurePosixPath(source) / target.relative_to(dest))
        return str(target)

    def _own_mounts(self) -> list[tuple[PurePosixPath, str]]:
        if self._mounts is None:
            self._mounts = []
            me = os.environ.get(SELF_CONTAINER_ENV) or _container_id_from_mountinfo()
            if me:
                try:
                    attrs = self.client.containers.get(me).attrs
                except Exception as exc:  # noqa: BLE001 - any failure means "no translation"
                    log.warning("cannot inspect the agent's own container %s: %s", me, exc)
                else:
                    pairs = [(PurePosixPath(m["Destination"]), str(m["Source"]))
                             for m in attrs.get("Mounts", []) if m.get("Source")]
                    # longest destination first, so nested mounts win
                    self._mounts = sorted(pairs, key=lambda p: len(p[0].parts), reverse=True)
        return self._mounts


def _container_id_from_mountinfo() -> str | None:
    """The id of the container this process runs in, if any: the engine bind
    mounts the container's /etc/hostname from .../containers/<id>/hostname.

    Only that mount point counts: on the engine's own host, every process's
    mountinfo also lists other containers' mounts (their /dev/shm), which must
    not be mistaken for our own container."""
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/etc/hostname":
                    found = _CONTAINER_ID_RE.search(fields[3] + "/")
                    if found:
                        return found.group(1)
    except OSError:
        pass
    return None


def _readable(directory: Path) -> None:
    """Let the image's unprivileged user read a directory the agent may have made private
    (its files too: a downloaded model is written through mkstemp, 0600)."""
    directory.chmod(0o755)
    for entry in directory.iterdir():
        if entry.is_file():
            entry.chmod(0o644)


def job_model_digest(job_dir: Path) -> str:
    """The sha256 of the job's model, from the job file the agent wrote from a validated JobSpec
    (validated again by the wire contract's own ModelArtifactRef: a digest, never a path)."""
    import json

    from edgebench.schemas.artifact import ModelArtifactRef

    try:
        ref = ModelArtifactRef.model_validate(json.loads((job_dir / "job.json").read_text())["model_artifact"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise ExecutorError(f"the job file names no valid model artifact: {exc}") from None
    return ref.digest
