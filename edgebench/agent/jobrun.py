"""Run one job: start the runner, follow its protocol, enforce timeouts and
cancellation, and turn what it said into a terminal state and a Result."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
from pydantic import ValidationError

from edgebench.agent.artifacts import ArtifactError, Artifacts, Delivery
from edgebench.agent.executors import Executor, ExecutorError, RunnerProcess
from edgebench.agent.runner_messages import (
    BadLine,
    Epoch,
    Error,
    Hello,
    PhaseMessage,
    ProgressMessage,
    ResultMessage,
    RunnerMessage,
    Window,
    parse_line,
)
from edgebench.agent.telemetry import Sampler, SamplerReport
from edgebench.schemas import ErrorType, Fingerprint, JobSpec, JobState, Progress, Result
from edgebench.schemas.result import RepeatSpread

log = logging.getLogger(__name__)

_EOF = object()


@dataclass
class JobOutcome:
    state: JobState
    reason: str | None = None
    error_type: ErrorType | None = None
    log_tail: str | None = None
    result: Result | None = None


@dataclass
class _RunnerState:
    libraries: dict[str, str] = field(default_factory=dict)
    result: ResultMessage | None = None
    invalid_result: str | None = None  # why a result line was refused
    error: Error | None = None
    measured_epochs: int = 0
    bad_lines: int = 0


class JobRun:
    """One attempt of one job. ``run()`` blocks; ``cancel()`` may be called from
    any thread."""

    def __init__(
        self,
        job: JobSpec,
        attempt: int,
        device_id: str,
        executor: Executor,
        job_dir: Path,
        dataset_root: Path,
        fingerprint: Callable[[dict[str, str]], Fingerprint],
        on_progress: Callable[[Progress], None],
        sampler: Sampler | None = None,
        env: dict[str, str] | None = None,
        progress_interval_s: float = 1.0,
        artifacts: Artifacts | None = None,
    ):
        self.job = job
        self.attempt = attempt
        self.device_id = device_id
        self.executor = executor
        self.job_dir = job_dir
        self.dataset_root = dataset_root
        self.fingerprint = fingerprint
        self.on_progress = on_progress
        self.sampler = sampler
        self.env = env or {}
        self.progress_interval_s = progress_interval_s
        self.artifacts = artifacts
        self.delivery: Delivery | None = None  # the job's model file, when it names one
        self._cancel = threading.Event()
        self._cancel_reason = ""
        self._proc: RunnerProcess | None = None

    def cancel(self, reason: str) -> None:
        self._cancel_reason = reason
        self._cancel.set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def run(self) -> JobOutcome:
        ref = self.job.model_artifact
        if ref is None:
            return self._run()
        # the user's model file: fetched and its digest verified before the runner starts (agent/artifacts.py)
        if self.artifacts is None:
            return JobOutcome(JobState.FAILED, "this agent has no model cache", ErrorType.ARTIFACT)
        try:
            with self.artifacts.hold(ref) as delivery:
                self.delivery = delivery
                self.env = dict(self.env, EDGEBENCH_MODEL_CACHE=str(self.artifacts.root))
                return self._run()
        except ArtifactError as exc:
            return JobOutcome(JobState.FAILED, str(exc), ErrorType.ARTIFACT)

    def _run(self) -> JobOutcome:
        started_at = datetime.now(timezone.utc)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        spec = self.job.model_dump(mode="json")
        (self.job_dir / "job.json").write_text(json.dumps(spec))
        if self._cancel.is_set():
            return JobOutcome(JobState.CANCELED, self._cancel_reason)
        try:
            proc = self.executor.start(self.job_dir, self.env, self.dataset_root)
        except ExecutorError as exc:
            return JobOutcome(JobState.FAILED, str(exc), ErrorType.BACKEND_ERROR)
        self._proc = proc
        record_runner(self.job_dir, proc.pid)
        if self.sampler is not None and proc.pid is not None:
            self.sampler.start(proc.pid)
        lines: queue.Queue[object] = queue.Queue()
        reader = threading.Thread(target=self._read, args=(proc, lines), daemon=True)
        reader.start()
        state = _RunnerState()
        deadline = time.monotonic() + self.job.timeout_s
        last_heard = time.monotonic()
        last_progress = 0.0
        ended: JobOutcome | None = None
        while True:
            now = time.monotonic()
            if self._cancel.is_set():
                ended = JobOutcome(JobState.CANCELED, self._cancel_reason or "canceled")
            elif now > deadline:
                ended = JobOutcome(JobState.TIMED_OUT, f"job exceeded timeout_s={self.job.timeout_s:g}")
            elif now - last_heard > self.job.step_timeout_s:
                ended = JobOutcome(
                    JobState.TIMED_OUT,
                    f"runner silent for more than step_timeout_s={self.job.step_timeout_s:g}",
                )
            if ended is not None:
                proc.kill()
                break
            try:
                item = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _EOF:
                break
            last_heard = time.monotonic()
            msg = self._parse(str(item), state)
            if msg is None:
                continue
            progress = self._handle(msg, state)
            if progress is not None and (
                isinstance(msg, PhaseMessage | Epoch) or last_heard - last_progress >= self.progress_interval_s
            ):
                last_progress = last_heard
                self.on_progress(progress)
        try:
            rc = proc.wait(30)
        except TimeoutError:
            proc.kill()
            rc = -9
        report = None
        if self.sampler is not None and proc.pid is not None:
            # the sampler sums energy over every repeat's window: divide by every repeat's images
            images = sum(r.throughput.images for r in state.result.runs) if state.result else 0
            report = self.sampler.stop(images, state.measured_epochs, self._memory_policy(state))
        tail = proc.stderr_tail()
        if state.bad_lines:
            log.warning("job %s: the runner sent %d line(s) that are not protocol messages (ignored)",
                        self.job.job_id, state.bad_lines)
        if ended is not None:
            ended.log_tail = tail
            return ended
        if state.error is not None:
            return JobOutcome(JobState.FAILED, state.error.message, state.error.typed, tail)
        if state.result is None and state.invalid_result is not None:
            return JobOutcome(JobState.FAILED, f"runner produced an invalid result: {state.invalid_result}",
                              ErrorType.BACKEND_ERROR, tail)
        if state.result is None or rc != 0:
            return JobOutcome(
                JobState.FAILED,
                f"runner exited with status {rc} without a result",
                ErrorType.RUNNER_CRASH,
                tail,
            )
        try:
            result = self._build_result(state, started_at, report)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            return JobOutcome(JobState.FAILED, f"runner produced an invalid result: {exc}",
                              ErrorType.BACKEND_ERROR, tail)
        return JobOutcome(JobState.SUCCEEDED, result=result)

    # -- internals ------------------------------------------------------------------
    @staticmethod
    def _read(proc: RunnerProcess, out: queue.Queue[object]) -> None:
        try:
            for line in proc.lines():
                out.put(line)
        except (OSError, ValueError):
            pass
        finally:
            out.put(_EOF)

    @staticmethod
    def _parse(line: str, state: _RunnerState) -> RunnerMessage | None:
        if not line.strip():
            return None
        try:
            return parse_line(line)
        except BadLine as exc:
            state.bad_lines += 1
            if exc.kind == "result":
                state.invalid_result = exc.reason
            if state.bad_lines <= 3:  # a runner printing into the protocol would flood the log
                log.debug("bad runner line: %s", exc.reason)
            return None

    def _progress(self, phase: str, msg: PhaseMessage | ProgressMessage | Epoch, img_per_s: float | None = None,
                  loss: float | None = None) -> Progress:
        return Progress.model_validate({
            "phase": phase, "epoch": msg.epoch, "epochs": max(self.job.workload.epochs, msg.epoch),
            "repeat": msg.repeat, "img_per_s": img_per_s, "loss": loss})

    def _handle(self, msg: RunnerMessage, state: _RunnerState) -> Progress | None:
        if isinstance(msg, Hello):
            state.libraries = dict(msg.libraries)
        elif isinstance(msg, Window):
            if self.sampler is not None:
                self.sampler.mark_window(msg.edge, msg.t if msg.t is not None else time.time())
        elif isinstance(msg, PhaseMessage):
            return self._progress(msg.phase, msg)
        elif isinstance(msg, ProgressMessage):
            return self._progress(msg.phase, msg, msg.img_per_s, msg.loss)
        elif isinstance(msg, Epoch):
            if not msg.warmup:
                state.measured_epochs += 1  # every repeat's: energy is summed over all windows
            return self._progress("warmup" if msg.warmup else "measure", msg, msg.img_per_s, msg.loss)
        elif isinstance(msg, ResultMessage):
            state.result = msg
        elif isinstance(msg, Error):
            state.error = msg
        return None

    @staticmethod
    def _memory_policy(state: _RunnerState) -> str | None:
        return state.result.knobs.get("memory") if state.result else None

    def _fingerprint(self, libraries: dict[str, str]) -> Fingerprint:
        fp = self.fingerprint(libraries)
        ref = self._proc.container() if self._proc is not None else None
        if ref is not None:  # the docker executor: which image, and exactly which build of it
            fp = fp.model_copy(update={"container_image": ref.image, "container_digest": ref.digest})
        return fp

    def _build_result(self, state: _RunnerState, started_at: datetime,
                      report: SamplerReport | None) -> Result:
        assert state.result is not None
        raw = state.result
        runs = raw.runs
        rates = [r.throughput.window_img_per_s for r in runs]
        median_rate = statistics.median(rates)
        headline = min(runs, key=lambda r: abs(r.throughput.window_img_per_s - median_rate))
        spread = RepeatSpread(
            n=len(rates), min_img_per_s=min(rates), max_img_per_s=max(rates),
            std_img_per_s=statistics.stdev(rates) if len(rates) > 1 else 0.0,
        )
        job = self.job
        return Result(
            job_id=job.job_id,
            device_id=self.device_id,
            job=job,
            global_batch_size=raw.global_batch_size if raw.global_batch_size is not None else job.workload.batch_size,
            per_device_batch_size=(raw.per_device_batch_size if raw.per_device_batch_size is not None
                                   else job.workload.batch_size),
            data_source=raw.data_source,
            summary=headline.throughput,
            repeat_spread=spread,
            runs=runs,
            knobs=dict(raw.knobs),
            devices_used=raw.devices_used,
            telemetry=report.summary if report else None,
            timeseries=report.timeseries if report else None,
            fingerprint=self._fingerprint(state.libraries),
            started_at=started_at,
            finished_at=datetime.now(timezone.utc),
        )


RUNNER_RECORD = "runner.json"


def record_runner(job_dir: Path, pid: int | None) -> None:
    """Note the runner's PID and start time, so that an agent restarted after
    a crash can end a runner it left behind (the runner leads its own process
    group, so it outlives the agent)."""
    if pid is None:
        return
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    (job_dir / RUNNER_RECORD).write_text(json.dumps({"pid": pid, "create_time": created}))


def kill_orphaned_runner(job_dir: Path) -> bool:
    """Kill the runner recorded in job_dir and its process group, if it still
    runs (same PID *and* start time: a reused PID is left alone)."""
    try:
        rec = json.loads((job_dir / RUNNER_RECORD).read_text())
        proc = psutil.Process(int(rec["pid"]))
        if abs(proc.create_time() - float(rec["create_time"])) > 0.01:
            return False
        procs = [proc, *proc.children(recursive=True)]
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for p in procs:  # children that left the group
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)
    return True
