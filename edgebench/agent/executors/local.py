"""The ``local`` executor: ``python -m runner`` with the interpreter configured
for the backend, in its own process group, with only a private copy of the
runner package on PYTHONPATH (executors/base.py install_runner_code)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

from edgebench.agent.config import LocalBackend
from edgebench.agent.executors.base import Executor, ExecutorError, RunnerProcess, bounded_text_lines
from edgebench.schemas import BackendInfo


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
        yield from bounded_text_lines(self._proc.stdout.readline)

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
        count = data.get("accelerators")
        return BackendInfo(
            backend=backend,
            available=bool(data.get("available")),
            executor="local",
            detail=str(data.get("detail", "")) + f" ({self.cfg.python})",
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            providers=[str(p)[:100] for p in (data.get("providers") or [])][:32],
            # what the framework itself sees (runner/probe.py): validation refuses gpus beyond it
            accelerators=count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 1024
            else None,
            accelerator_detail=str(data.get("accelerator_detail") or "")[:500],
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
