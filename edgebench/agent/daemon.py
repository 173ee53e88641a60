"""The agent daemon: identity and presence, threads, recovery, job execution.

Threads: paho's network thread (callbacks only hand over), the main thread
(inbound messages, through agent/intake.py), workers (one by default: jobs run
one at a time in order; with ``concurrent_per_gpu`` one per GPU, each job
pinned to its GPUs by agent/gpupool.py) and the outbox publisher
(agent/outbox.py: publishes stored events until the broker acknowledges them).

Every state change of a job commits together with the event that announces it
(agent/store.py); the runner's outcome is saved before that commit
(agent/outcome.py), so an agent killed at any instant reports every job it
accepted, with its result where one was measured.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from edgebench.agent import faults
from edgebench.agent.artifacts import Artifacts
from edgebench.agent.config import AgentConfig
from edgebench.agent.executors import Executor, ExecutorError, install_runner_code, make_executor
from edgebench.agent.fingerprint import agent_version, gpu_inventory, machine_fingerprint
from edgebench.agent.gpupool import GpuPool
from edgebench.agent.intake import Intake, IntakeConfig
from edgebench.agent.jobrun import JobOutcome, JobRun, kill_orphaned_runner
from edgebench.agent.outbox import REASON_MAX, Events, OutboxPublisher
from edgebench.agent.outcome import load_outcome, save_outcome
from edgebench.agent.power_mode import run_in_power_mode
from edgebench.agent.store import AgentStore, StoredJob
from edgebench.agent.telemetry import Sampler, Telemetry, TelemetryUnavailable, create_telemetry
from edgebench.agent.telemetry.prometheus import MetricsServer, MetricsSource, start_metrics_server
from edgebench.common.mqtt import BrokerSettings, Message, MqttClient, Will
from edgebench.common.text import printable
from edgebench.schemas import (
    AgentStatus,
    BackendInfo,
    Envelope,
    ErrorType,
    Fingerprint,
    GpuInfo,
    JobSpec,
    JobState,
    Progress,
    topics,
)
from edgebench.schemas.envelope import encode

log = logging.getLogger(__name__)

_WAKE = ("", 0)  # put on the work queue to wake a worker when stopping
PRUNE_INTERVAL_S = 3600.0


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.store = AgentStore(cfg.state_dir / "agent.db")
        self.runner_home = install_runner_code(cfg.state_dir / "runner-code")
        self.executors: dict[str, Executor] = {}
        self._unusable: dict[str, BackendInfo] = {}  # configured, but cannot run here
        for name, bcfg in cfg.backends.items():
            try:
                self.executors[name] = make_executor(bcfg, self.runner_home, cfg.image_allowlist)
            except ExecutorError as exc:
                log.warning("backend %s unavailable: %s", name, exc)
                self._unusable[name] = BackendInfo(backend=name, available=False, executor=bcfg.executor,
                                                   detail=str(exc))
        self.backends: dict[str, BackendInfo] = {}
        self.telemetry = self._open_telemetry()
        self.gpus: list[GpuInfo] = [g for g in gpu_inventory(self.telemetry)
                                    if cfg.gpu_indices is None or g.index in cfg.gpu_indices]
        self.metrics_source = MetricsSource(self.telemetry)
        self._metrics_server: MetricsServer | None = None
        self._stop = threading.Event()
        self._work: queue.Queue[tuple[str, int]] = queue.Queue()
        self._running: dict[str, JobRun] = {}
        self._running_lock = threading.Lock()
        self._early_cancels: dict[str, str] = {}  # job id -> reason, under _running_lock
        self.gpu_pool = GpuPool([g.index for g in self.gpus])
        self.artifacts = Artifacts.from_config(cfg)  # users' model files, by digest (agent/artifacts.py)
        self.workers = len(self.gpus) if (cfg.concurrent_per_gpu and len(self.gpus) > 1) else 1
        self._status_dirty = threading.Event()
        self._connections = 0
        self.events = Events(cfg.device_id, cfg.max_event_bytes)
        settings = BrokerSettings.from_url(
            cfg.broker_url, username=cfg.username, password=cfg.password,
            ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file,
        )
        self.outbox: OutboxPublisher | None = None
        self.client = MqttClient(
            settings,
            client_id=f"edgebench-agent-{cfg.device_id}",
            will=Will(self.status_topic, self._status_payload(online=False)),
            persistent_session_s=cfg.session_expiry_s or None,
            on_publish_ack=self._on_ack,
            on_connection_change=self._on_connection_change,
            manual_ack=True,
        )
        self.outbox = OutboxPublisher(self.store, self.client, self._stop)
        self.store.on_enqueue = self.outbox.wake.set
        self.intake = Intake(
            IntakeConfig(cfg.device_id, self.events_topic, self.job_topics(), cfg.max_payload_bytes,
                         cfg.job_public_key),
            self.store, self.events, lambda: self.backends, len(self.gpus),
            on_queued=self._queued, cancel_running=self._cancel_running)

    # -- identity -----------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return topics.status(self.cfg.fleet, self.cfg.device_id)

    @property
    def events_topic(self) -> str:
        return topics.events(self.cfg.fleet, self.cfg.device_id)

    def job_topics(self) -> list[str]:
        fleet = self.cfg.fleet
        return [
            topics.jobs(fleet, self.cfg.device_id),
            topics.fleet_jobs(fleet),
            *(topics.group_jobs(fleet, tag) for tag in self.cfg.tags),
        ]

    def _open_telemetry(self) -> Telemetry:
        try:
            return create_telemetry(self.cfg.telemetry, self.cfg.sample_interval_s, self.cfg.nvml_read_plan)
        except TelemetryUnavailable as exc:
            # an explicit "nvml"/"jetson" that cannot run here: say so, measure what we can
            log.warning("telemetry %r unavailable (%s): GPU metrics will be absent", self.cfg.telemetry, exc)
            return create_telemetry("none")

    def probe(self) -> None:
        """Find out which backends can run here (cheap: no framework import)."""
        self.backends = {name: ex.probe(name) for name, ex in self.executors.items()} | self._unusable

    def status(self, online: bool = True) -> AgentStatus:
        with self._running_lock:
            busy = ",".join(sorted(self._running)) or None
        return AgentStatus(
            device_id=self.cfg.device_id,
            fleet=self.cfg.fleet,
            online=online,
            at=datetime.now(timezone.utc),
            agent_version=agent_version(),
            tags=list(self.cfg.tags),
            backends=list(self.backends.values()),
            gpus=self.gpus,
            busy_job_id=busy,
            queue_length=self._work.qsize(),
            host=_hostname(),
        )

    def _status_payload(self, online: bool) -> bytes:
        return encode(Envelope.of(sender=self.cfg.device_id, body=self.status(online)))

    def fingerprint(self, libraries: dict[str, str]) -> Fingerprint:
        return machine_fingerprint(libraries, self.gpus)

    # -- lifecycle ------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set (or stop() is called)."""
        if stop is not None:
            self._stop = stop
            assert self.outbox is not None
            self.outbox.stop = stop
        self.probe()
        if self.cfg.metrics_port is not None:
            self._metrics_server = start_metrics_server(
                self.cfg.metrics_port, self.metrics_source, self.cfg.device_id, self.cfg.metrics_addr,
                certfile=self.cfg.metrics_cert_file, keyfile=self.cfg.metrics_key_file,
                client_cafile=self.cfg.metrics_client_ca_file)
        self._recover()
        log.info("agent %s (fleet %s, edgebench %s) connecting to %s", self.cfg.device_id, self.cfg.fleet,
                 agent_version(), self.client.settings.url)
        self.client.start()
        self.client.subscribe(self.job_topics())
        threads = [threading.Thread(target=self._worker, name=f"agent-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        assert self.outbox is not None
        self.outbox.start()
        next_status = 0.0
        next_prune = time.monotonic() + 60.0
        try:
            while not self._stop.is_set():
                if self._status_dirty.is_set() or time.monotonic() > next_status:
                    if self.client.connected:
                        self._status_dirty.clear()
                        self.client.publish(self.status_topic, self._status_payload(True), retain=True)
                        next_status = time.monotonic() + self.cfg.status_interval_s
                if time.monotonic() > next_prune:
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                    self._prune()
                try:
                    # 1 s: how late a status change or a stop may be noticed. Each
                    # wake-up costs the GIL; hundreds of agents in one process
                    # (benchmarks/fleet_scale.py) spent their CPU waking up.
                    msg = self.client.messages.get(timeout=1.0)
                except queue.Empty:
                    continue
                self.handle_message(msg)
                # acknowledged only now that the job is stored (or answered): an
                # agent killed before gets it again from its persistent session
                self.client.ack(msg)
        finally:
            self._shutdown(threads)

    def handle_message(self, msg: Message) -> None:
        """One inbound message; whatever happens, the process goes on (and the sender
        gets an answer where it can be given)."""
        try:
            self.intake.handle(msg)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the agent or lose the answer
            log.exception("unexpected error handling a message on %s", printable(msg.topic, 300))
            try:
                self.intake.reject(None, None, f"internal error in the agent: {type(exc).__name__}", "payload")
            except Exception:  # noqa: BLE001
                log.exception("could not answer the message either")

    def stop(self) -> None:
        self._stop.set()

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        with self._running_lock:
            running = list(self._running.values())
        for run in running:
            run.cancel("agent stopping")
        deadline = time.monotonic() + 5
        for _ in threads:
            self._work.put(_WAKE)  # they block on the queue
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # give the outbox a moment to drain, then say goodbye (no last will)
        assert self.outbox is not None
        while self.store.outbox_size() and self.client.connected and time.monotonic() < deadline:
            self.outbox.wake.set()
            time.sleep(0.05)
        if self.client.connected:
            self.client.publish_and_wait(self.status_topic, self._status_payload(False), retain=True,
                                         timeout_s=2)
        self.client.close()
        log.info("agent %s disconnected and stopped", self.cfg.device_id)
        # the publisher sees the closed connection and returns; only then close its store
        self.outbox.join(2)
        self.store.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.telemetry.close()

    def _prune(self) -> None:
        try:
            n = self.store.prune(self.cfg.retention_s)
            if n:
                log.info("pruned %d retained event(s) older than %.0f days", n, self.cfg.retention_s / 86400)
        except Exception:  # noqa: BLE001 - housekeeping must not stop the agent
            log.exception("pruning the store failed")

    def _recover(self) -> None:
        """After a restart: interrupted jobs are reported (with their result, where the
        runner had finished before the agent died); queued ones resume."""
        for executor in self.executors.values():
            try:
                executor.remove_stale_runners()  # docker: exited runner containers
            except Exception:  # noqa: BLE001 - a cleanup problem must not stop the agent
                log.exception("could not remove stale runner containers")
        for job in self.store.jobs_in_state(JobState.IN_PROGRESS):
            job_dir = self._job_dir(job.job_id, job.attempt)
            if kill_orphaned_runner(job_dir):
                log.warning("killed the runner of interrupted job %s, left over from before", job.job_id)
            outcome = load_outcome(job_dir)
            if outcome is not None:
                log.warning("job %s: finishing with the outcome saved before the agent stopped", job.job_id)
                self._commit_outcome(job.spec, job.attempt, outcome, point="recover:committed")
                continue
            self._commit_outcome(job.spec, job.attempt, JobOutcome(
                JobState.FAILED, "the agent stopped while this job ran (restart, crash or power loss)",
                ErrorType.INTERRUPTED), point="recover:committed")
        for job in self.store.jobs_in_state(JobState.QUEUED):
            self._work.put((job.job_id, job.attempt))

    # paho thread: only hand over, never touch SQLite here
    def _on_ack(self, mid: int) -> None:
        if self.outbox is not None:
            self.outbox.on_ack(mid)

    def _on_connection_change(self, connected: bool) -> None:
        if connected:
            self._connections += 1
            log.info("%s to the broker %s", "connected" if self._connections == 1 else "reconnected",
                     self.client.settings.url)
            self._status_dirty.set()
        else:
            log.warning("disconnected from the broker %s; reconnecting", self.client.settings.url)
        if self.outbox is not None:
            self.outbox.on_connection_change(connected)

    # -- intake callbacks ---------------------------------------------------------------
    def _queued(self, job_id: str, attempt: int) -> None:
        self._work.put((job_id, attempt))
        self._status_dirty.set()

    def _cancel_running(self, job_id: str, reason: str) -> None:
        with self._running_lock:
            run = self._running.get(job_id)
            if run is None:  # claimed by a worker, JobRun not made yet
                self._early_cancels[job_id] = reason
        if run is not None:
            run.cancel(reason)

    # -- worker -------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stop.is_set():
            job_id, attempt = self._work.get()  # _shutdown wakes us with _WAKE
            if self._stop.is_set():
                return  # a queued job stays QUEUED and resumes after a restart
            stored = self.store.get(job_id, attempt)  # one row, not a scan of the queue
            if stored is None or stored.state is not JobState.QUEUED:
                continue  # canceled while queued
            job = stored.spec
            gpu_ids = self.gpu_pool.acquire(job.gpus, self._stop)
            if gpu_ids is None:
                return  # stopping; the job stays QUEUED and resumes after a restart
            try:
                # claimed atomically, with its IN_PROGRESS event: a cancel may have won the race
                if self.store.transition(job_id, attempt, JobState.IN_PROGRESS, self.events_topic,
                                         self.events.builder(job_id, attempt, JobState.IN_PROGRESS, job.sweep_id,
                                                             progress=Progress(phase="setup", epoch=0,
                                                                               epochs=job.workload.epochs)),
                                         from_states=[JobState.QUEUED]):
                    self._run_job(stored, gpu_ids)
            except Exception:  # noqa: BLE001 - one job's failure inside the agent must not stop the worker
                log.exception("job %s failed inside the agent", job_id)
            finally:
                self.gpu_pool.release(gpu_ids)
            self._status_dirty.set()

    def _run_job(self, stored: StoredJob, gpu_ids: list[int]) -> None:
        job, attempt = stored.spec, stored.attempt
        job_id = job.job_id
        log.info("job %s started: %s %s/%s bs %d, %d GPU(s)", job_id, job.backend.value, job.workload.model,
                 job.workload.dataset, job.workload.batch_size, len(gpu_ids))
        run = JobRun(
            job=job,
            attempt=attempt,
            device_id=self.cfg.device_id,
            executor=self.executors[job.backend.value],
            job_dir=self._job_dir(job_id, attempt),
            dataset_root=self.cfg.dataset_root,
            fingerprint=self.fingerprint,
            on_progress=lambda p: self._progress(job, attempt, p),
            sampler=self._make_sampler(job, gpu_ids),
            env=self._runner_env(job, gpu_ids),
            artifacts=self.artifacts,
        )
        with self._running_lock:
            self._running[job_id] = run
            early = self._early_cancels.pop(job_id, None)
        if early is not None:
            run.cancel(early)  # the cancel came between the claim and now
        self._status_dirty.set()
        try:
            # Jetson: the job's nvpmodel mode, set and restored around it (agent/power_mode.py)
            outcome = run_in_power_mode(run.run, job.power_mode, self.cfg.allow_power_mode)
        finally:
            with self._running_lock:
                self._running.pop(job_id, None)
                if not self._running:
                    self.metrics_source.detach()
        save_outcome(run.job_dir, outcome)
        faults.point("finish:outcome-saved")
        self._commit_outcome(job, attempt, outcome, point="finish:committed")

    def _progress(self, job: JobSpec, attempt: int, progress: Progress) -> None:
        self.store.emit(job.job_id, attempt, self.events_topic,
                        self.events.builder(job.job_id, attempt, JobState.IN_PROGRESS, job.sweep_id,
                                            progress=progress))
        assert self.outbox is not None
        self.outbox.wake.set()

    def _commit_outcome(self, job: JobSpec, attempt: int, outcome: JobOutcome, point: str) -> None:
        """The terminal state and its event, in one transaction."""
        fields: dict[str, object] = {}
        if outcome.reason:
            fields["reason"] = printable(outcome.reason, REASON_MAX - 100)
        if outcome.error_type:
            fields["error_type"] = outcome.error_type
        if outcome.log_tail and outcome.state is not JobState.SUCCEEDED:
            fields["log_tail"] = outcome.log_tail[-20000:]
        if outcome.result is not None:
            fields["result"] = outcome.result
        committed = self.store.transition(job.job_id, attempt, outcome.state, self.events_topic,
                                          self.events.builder(job.job_id, attempt, outcome.state, job.sweep_id,
                                                              **fields),
                                          from_states=[JobState.IN_PROGRESS])
        if not committed:
            log.warning("job %s was no longer in progress: outcome %s not recorded", job.job_id, outcome.state.value)
            return
        faults.point(point)
        assert self.outbox is not None
        self.outbox.wake.set()
        rate = (f", {outcome.result.summary.window_img_per_s:,.1f} img/s" if outcome.result is not None else "")
        detail = f" ({outcome.error_type.value}: {printable(outcome.reason or '', 300)})" if outcome.error_type else ""
        log.info("job %s %s: %s %s bs %d%s%s", job.job_id, outcome.state.value, job.backend.value,
                 job.workload.model, job.workload.batch_size, rate, detail)

    def _job_dir(self, job_id: str, attempt: int) -> Path:
        return self.cfg.state_dir / "jobs" / f"{job_id}-{attempt}"

    @staticmethod
    def _runner_env(job: JobSpec, gpu_ids: list[int]) -> dict[str, str]:
        if not gpu_ids:
            return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
        # NVML numbers GPUs in PCI bus order; make CUDA use the same numbering
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpu_ids)}

    def _make_sampler(self, job: JobSpec, gpu_ids: list[int]) -> Sampler:
        sampler = Sampler(self.telemetry, self.cfg.sample_interval_s, gpu_indices=gpu_ids, job_id=job.job_id)
        self.metrics_source.attach(sampler, job.job_id)
        return sampler


def _hostname() -> str:
    import socket

    return socket.gethostname()

