"""What every executor gives the agent: a RunnerProcess with a stream of
protocol lines, a way to kill everything it started, and the tail of its
stderr; optional capabilities are methods with defaults here."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import edgebench.runner as runner_pkg
from edgebench.agent.errors import AgentError
from edgebench.agent.runner_messages import MAX_LINE_CHARS
from edgebench.schemas import BackendInfo


class ExecutorError(AgentError):
    pass


@dataclass(frozen=True)
class ContainerRef:
    """The image a runner ran in, recorded in the result's fingerprint (reports
    group devices by image digest)."""

    image: str
    digest: str | None


class RunnerProcess(ABC):
    @property
    @abstractmethod
    def pid(self) -> int | None:
        """Host PID of the runner's root process (for telemetry), if known."""

    @abstractmethod
    def lines(self) -> Iterator[str]:
        """Protocol lines from the runner's stdout until it closes (each at most
        MAX_LINE_CHARS + 1 characters: longer ones are cut, and refused by the parser)."""

    @abstractmethod
    def wait(self, timeout_s: float | None = None) -> int:
        """Exit status (raises TimeoutError)."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the runner and everything it started; idempotent."""

    @abstractmethod
    def stderr_tail(self, max_bytes: int = 8000) -> str: ...

    def container(self) -> ContainerRef | None:
        """The container image the runner ran in; None when it ran on the host."""
        return None


class Executor(ABC):
    kind: str

    @abstractmethod
    def probe(self, backend: str) -> BackendInfo: ...

    @abstractmethod
    def start(self, job_dir: Path, env: dict[str, str], dataset_root: Path) -> RunnerProcess:
        """Start ``python -m runner --job job_dir/job.json``."""

    def remove_stale_runners(self) -> int:
        """Remove runners an earlier life of this agent left behind; returns how many."""
        return 0


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


def bounded_text_lines(readline: Callable[[int], str], max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Lines from a text stream's ``readline(size)``, none longer than max_chars + 1:
    the rest of a longer line is read and dropped, so memory stays bounded."""
    while True:
        line = readline(max_chars + 1)
        if not line:
            return
        if len(line) > max_chars and not line.endswith("\n"):
            while True:  # skip to the end of this line
                rest = readline(max_chars + 1)
                if not rest or rest.endswith("\n"):
                    break
        yield line


def bounded_chunk_lines(chunks: Iterable[bytes], max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Lines from a stream of byte chunks (split anywhere), none longer than max_chars + 1."""
    buf = b""
    skipping = False
    for chunk in chunks:
        buf += chunk
        while True:
            end = buf.find(b"\n")
            if end < 0:
                break
            line, buf = buf[:end], buf[end + 1:]
            if skipping:
                skipping = False
                continue
            yield line.decode("utf-8", "replace") + "\n"
        if len(buf) > max_chars:
            if not skipping:
                yield buf[:max_chars + 1].decode("utf-8", "replace")
            skipping = True
            buf = b""
    if buf and not skipping:
        yield buf.decode("utf-8", "replace")
