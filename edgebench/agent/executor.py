"""Executors start a runner for a job: ``local`` (an interpreter on this host)
and ``docker`` (a runner image through the Docker SDK, see agent/docker_executor.py).

Whatever starts the runner, the agent sees the same thing: a RunnerProcess
with a stream of protocol lines, a way to kill everything it started, and the
tail of its stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import psutil

import edgebench.runner as runner_pkg
from edgebench.agent.config import BackendConfig, LocalBackend
from edgebench.agent.errors import AgentError
from edgebench.schemas import BackendInfo


class ExecutorError(AgentError):
    pass


class RunnerProcess(ABC):
    @property
    @abstractmethod
    def pid(self) -> int | None:
        """Host PID of the runner's root process (for telemetry), if known."""

    @abstractmethod
    def lines(self) -> Iterator[str]:
        """Protocol lines from the runner's stdout until it closes."""

    @abstractmethod
    def wait(self, timeout_s: float | None = None) -> int:
        """Exit status (raises TimeoutError)."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the runner and everything it started; idempotent."""

    @abstractmethod
    def stderr_tail(self, max_bytes: int = 8000) -> str: ...


class Executor(ABC):
    kind: str

    @abstractmethod
    def probe(self, backend: str) -> BackendInfo: ...

    @abstractmethod
    def start(self, job_dir: Path, env: dict[str, str], dataset_root: Path) -> RunnerProcess:
        """Start ``python -m runner --job job_dir/job.json``."""


def install_runner_code(dest: Path) -> Path:
    """Copy the runner package (sources only) to dest/runner and return dest.

    The runner then imports nothing from the agent's environment: a Python 3.6
    venv for the 2019 stacks sees only the runner and its own site-packages.
    """
    src = Path(runner_pkg.__file__).resolve().parent
    target = dest / "runner"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


class LocalRunnerProcess(RunnerProcess):
    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path):
        self._proc = proc
        self._stderr_path = stderr_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def lines(self) -> Iterator[str]:
        assert self._proc.stdout is not None
        yield from self._proc.stdout

    def wait(self, timeout_s: float | None = None) -> int:
        try:
            return self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(str(exc)) from None

    def kill(self) -> None:
        # The runner leads its own process group (start_new_session), so one
        # signal reaches every worker process a framework started. Children
        # that created their own sessions are found through psutil.
        try:
            children = psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stderr_tail(self, max_bytes: int = 8000) -> str:
        return _tail(self._stderr_path, max_bytes)


_PROBE_CACHE: dict[tuple[str, tuple[tuple[str, str], ...], str], BackendInfo] = {}
_PROBE_LOCK = threading.Lock()


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, cfg: LocalBackend, runner_home: Path):
        if os.sep in cfg.python and not os.path.isabs(cfg.python):
            # a relative interpreter path means relative to where the agent started,
            # not to the job directory the runner starts in
            cfg = cfg.model_copy(update={"python": os.path.abspath(cfg.python)})
        self.cfg = cfg
        self.runner_home = runner_home

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHON"))}
        env.update(self.cfg.env)
        env.update(extra)
        # the runner first; a backend's own extra paths (its env PYTHONPATH) after it
        extra_path = self.cfg.env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self.runner_home) + (os.pathsep + extra_path if extra_path else "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONNOUSERSITE"] = "1"
        return env

    def probe(self, backend: str) -> BackendInfo:
        # Once per (interpreter, backend env, backend) in this process: a probe
        # is a subprocess (~50 ms), and several agents in one process (the
        # fleet-scale benchmark) would otherwise pay it agents x backends times.
        key = (self.cfg.python, tuple(sorted(self.cfg.env.items())), backend)
        with _PROBE_LOCK:
            cached = _PROBE_CACHE.get(key)
            if cached is None:
                cached = _PROBE_CACHE[key] = self._probe(backend)
        return cached

    def _probe(self, backend: str) -> BackendInfo:
        try:
            out = subprocess.run(
                [self.cfg.python, "-m", "runner.probe", backend],
                env=self._env({}), capture_output=True, text=True, timeout=60,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            return BackendInfo(backend=backend, available=False, executor="local",
                               detail=f"{self.cfg.python}: {exc}")
        return BackendInfo(
            backend=backend,
            available=bool(data.get("available")),
            executor="local",
            detail=str(data.get("detail", "")) + f" ({self.cfg.python})",
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            providers=[str(p)[:100] for p in (data.get("providers") or [])][:32],
        )

    def start(self, job_dir: Path, env: dict[str, str], dataset_root: Path) -> RunnerProcess:
        stderr_path = job_dir / "stderr.log"
        stderr = stderr_path.open("wb")
        try:
            proc = subprocess.Popen(
                [self.cfg.python, "-m", "runner", "--job", str(job_dir / "job.json"),
                 "--dataset-root", str(dataset_root)],
                cwd=str(job_dir),
                env=self._env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise ExecutorError(f"cannot start {self.cfg.python}: {exc}") from exc
        finally:
            stderr.close()
        return LocalRunnerProcess(proc, stderr_path)


def make_executor(cfg: BackendConfig, runner_home: Path, allowlist: list[str]) -> Executor:
    """The executor for one configured backend; ExecutorError if it cannot be
    used here (the agent then announces the backend unavailable, with the
    reason, and rejects its jobs naming ``backend``)."""
    if isinstance(cfg, LocalBackend):
        return LocalExecutor(cfg, runner_home)
    from edgebench.agent.docker_executor import image_allowed  # importable without the docker package

    if not image_allowed(cfg.image, allowlist):
        # checked here too, not only inside the docker executor: a config
        # mistake must never start an image the operator did not allow
        raise ExecutorError(f"image {cfg.image!r} is not in image_allowlist")
    try:
        from edgebench.agent.docker_executor import DockerExecutor  # needs the docker extra
    except ImportError as exc:
        raise ExecutorError(f"the docker executor cannot load: {exc}") from None
    return DockerExecutor(cfg, runner_home, allowlist)
