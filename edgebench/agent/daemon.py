"""The agent daemon: presence, job intake, one-at-a-time execution, outbox.

Threads: paho's network thread (callbacks only hand over), the main thread
(handles inbound messages), workers (one by default: jobs run one at a time
in order; with ``concurrent_per_gpu`` one per GPU, each job pinned to its
GPUs by agent/gpupool.py) and the outbox publisher (publishes stored events
until the broker acknowledges them).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from edgebench.agent.config import AgentConfig
from edgebench.agent.eventsize import encode_event
from edgebench.agent.executor import Executor, ExecutorError, install_runner_code, make_executor
from edgebench.agent.fingerprint import agent_version, gpu_inventory, machine_fingerprint
from edgebench.agent.gpupool import GpuPool
from edgebench.agent.jobrun import JobOutcome, JobRun, kill_orphaned_runner
from edgebench.agent.store import AgentStore
from edgebench.agent.telemetry import Sampler, Telemetry, TelemetryUnavailable, create_telemetry
from edgebench.agent.telemetry.prometheus import MetricsServer, MetricsSource, start_metrics_server
from edgebench.agent.validation import Rejection, check_job
from edgebench.common.mqtt import BrokerSettings, Message, MqttClient, Will
from edgebench.schemas import (
    AgentStatus,
    BackendInfo,
    CancelRequest,
    Envelope,
    ErrorType,
    Fingerprint,
    GpuInfo,
    JobEvent,
    JobSpec,
    JobState,
    Progress,
    topics,
)
from edgebench.schemas.envelope import DecodeError, decode, encode

log = logging.getLogger(__name__)

_WAKE = ("", 0)  # put on the work queue to wake a worker when stopping


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
        self.workers = len(self.gpus) if (cfg.concurrent_per_gpu and len(self.gpus) > 1) else 1
        self._acks: queue.Queue[int] = queue.Queue()
        self._outbox_wake = threading.Event()
        self._status_dirty = threading.Event()
        settings = BrokerSettings.from_url(
            cfg.broker_url, username=cfg.username, password=cfg.password,
            ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file,
        )
        self.client = MqttClient(
            settings,
            client_id=f"edgebench-agent-{cfg.device_id}",
            will=Will(self.status_topic, self._status_payload(online=False)),
            persistent_session_s=cfg.session_expiry_s or None,
            on_publish_ack=self._on_ack,
            on_connection_change=self._on_connection_change,
            manual_ack=True,
        )

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
        return encode(Envelope(sender=self.cfg.device_id, body=self.status(online)))

    def fingerprint(self, libraries: dict[str, str]) -> Fingerprint:
        return machine_fingerprint(libraries, self.gpus)

    # -- lifecycle ------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set (or stop() is called)."""
        if stop is not None:
            self._stop = stop
        self.probe()
        if self.cfg.metrics_port is not None:
            self._metrics_server = start_metrics_server(self.cfg.metrics_port, self.metrics_source,
                                                        self.cfg.device_id)
        self._recover()
        self.client.start()
        self.client.subscribe(self.job_topics())
        threads = [threading.Thread(target=self._worker, name=f"agent-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        threads.append(threading.Thread(target=self._publisher, name="agent-outbox", daemon=True))
        for t in threads:
            t.start()
        next_status = 0.0
        try:
            while not self._stop.is_set():
                if self._status_dirty.is_set() or time.monotonic() > next_status:
                    if self.client.connected:
                        self._status_dirty.clear()
                        self.client.publish(self.status_topic, self._status_payload(True), retain=True)
                        next_status = time.monotonic() + self.cfg.status_interval_s
                try:
                    # 1 s: how late a status change or a stop may be noticed. Each
                    # wake-up costs the GIL; hundreds of agents in one process
                    # (benchmarks/fleet_scale.py) spent their CPU waking up.
                    msg = self.client.messages.get(timeout=1.0)
                except queue.Empty:
                    continue
                try:
                    self.handle_message(msg)
                except Exception:
                    log.exception("unexpected error handling a message on %s", msg.topic)
                # acknowledged only now that the job is stored (or answered): an
                # agent killed before gets it again from its persistent session
                self.client.ack(msg)
        finally:
            self._shutdown(threads)

    def stop(self) -> None:
        self._stop.set()

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        with self._running_lock:
            running = list(self._running.values())
        for run in running:
            run.cancel("agent stopping")
        deadline = time.monotonic() + 5
        workers = [t for t in threads if t.name.startswith("agent-worker")]
        for _ in workers:
            self._work.put(_WAKE)  # they block on the queue
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        # give the outbox a moment to drain, then say goodbye (no last will)
        while self.store.outbox_size() and self.client.connected and time.monotonic() < deadline:
            self._outbox_wake.set()
            time.sleep(0.05)
        if self.client.connected:
            self.client.publish_and_wait(self.status_topic, self._status_payload(False), retain=True,
                                         timeout_s=2)
        self.client.close()
        # the publisher sees the closed connection and returns; only then close its store
        self._outbox_wake.set()
        for t in threads:
            if t.name == "agent-outbox":
                t.join(2)
        self.store.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.telemetry.close()

    def _recover(self) -> None:
        """After a restart: interrupted jobs are reported, queued ones resume."""
        for executor in self.executors.values():
            remove = getattr(executor, "remove_stale_runners", None)  # docker: exited runner containers
            if remove is not None:
                try:
                    remove()
                except Exception:  # noqa: BLE001 - a cleanup problem must not stop the agent
                    log.exception("could not remove stale runner containers")
        for job in self.store.jobs_in_state(JobState.IN_PROGRESS.value):
            if kill_orphaned_runner(self._job_dir(job.job_id, job.attempt)):
                log.warning("killed the runner of interrupted job %s, left over from before", job.job_id)
            spec = JobSpec.model_validate_json(job.spec_json)
            self.store.set_state(job.job_id, job.attempt, JobState.FAILED.value)
            self.emit(spec, job.attempt, JobState.FAILED, error_type=ErrorType.INTERRUPTED,
                      reason="the agent stopped while this job ran (restart, crash or power loss)")
        for job in self.store.jobs_in_state(JobState.QUEUED.value):
            self._work.put((job.job_id, job.attempt))

    def _on_ack(self, mid: int) -> None:
        # paho thread: hand over, never touch SQLite here
        self._acks.put(mid)
        self._outbox_wake.set()

    def _on_connection_change(self, connected: bool) -> None:
        # paho thread: only flip flags
        if connected:
            self._status_dirty.set()
        self._outbox_wake.set()

    # -- inbound ----------------------------------------------------------------------
    def handle_message(self, msg: Message) -> None:
        if msg.topic not in self.job_topics():
            # a persistent session outlives configuration: subscriptions of an
            # earlier fleet or tag still deliver here. Not ours: drop it.
            log.warning("ignoring a message on %s, not one of this agent's job topics", msg.topic)
            return
        try:
            env = decode(msg.payload, self.cfg.max_payload_bytes)
        except DecodeError as exc:
            self.reject(exc.job_id or "-", exc.reason, exc.field or "payload")
            return
        body = env.body
        if isinstance(body, CancelRequest):
            self._cancel(body)
            return
        if not isinstance(body, JobSpec):
            self.reject(getattr(body, "job_id", "-"), f"a {body.kind!r} message is not a job", "body.kind")
            return
        if self.cfg.job_public_key is not None:
            reason = self._signature_problem(env)
            if reason:
                self.reject(body.job_id, reason, "signature")
                return
        if self.store.has_job(body.job_id):
            log.info("duplicate delivery of job %s ignored", body.job_id)
            return
        try:
            check_job(body, self.backends, len(self.gpus))
        except Rejection as rej:
            self.reject(body.job_id, rej.reason, rej.field, body.sweep_id)
            return
        if not self.store.add_job(body.job_id, body.model_dump_json(), JobState.QUEUED.value):
            return
        self.emit(body, 1, JobState.QUEUED)
        self._work.put((body.job_id, 1))
        self._status_dirty.set()

    def _signature_problem(self, env: Envelope) -> str | None:
        from edgebench.common.signing import SignatureError, check_signature, load_public_key

        assert self.cfg.job_public_key is not None
        try:
            check_signature(env, load_public_key(self.cfg.job_public_key))
        except SignatureError as exc:
            return str(exc)
        return None

    def _cancel(self, req: CancelRequest) -> None:
        if self.store.transition(req.job_id, 1, JobState.QUEUED.value, JobState.CANCELED.value):
            spec_json = self.store.get_spec(req.job_id)
            sweep_id = JobSpec.model_validate_json(spec_json).sweep_id if spec_json else None
            self.emit_raw(req.job_id, 1, JobState.CANCELED, sweep_id, reason=req.reason)
        elif self.store.get_state(req.job_id) == JobState.IN_PROGRESS.value:
            with self._running_lock:
                run = self._running.get(req.job_id)
                if run is None:  # claimed by a worker, JobRun not made yet
                    self._early_cancels[req.job_id] = req.reason
            if run is not None:
                run.cancel(req.reason)

    def reject(self, job_id: str, reason: str, field: str, sweep_id: str | None = None) -> None:
        log.info("REJECTED %s: %s (%s)", job_id, reason, field)
        # all three may echo untrusted input of any length: keep them to JobEvent's limits
        self.emit_raw(job_id[:200], 1, JobState.REJECTED, sweep_id, reason=reason[:4000], field=field[:500],
                      error_type=ErrorType.INVALID)

    # -- events -----------------------------------------------------------------------
    def emit(self, job: JobSpec, attempt: int, state: JobState, **fields: object) -> None:
        self.emit_raw(job.job_id, attempt, state, job.sweep_id, **fields)

    def emit_raw(self, job_id: str, attempt: int, state: JobState, sweep_id: str | None,
                 **fields: object) -> None:
        event = JobEvent.model_validate({
            "job_id": job_id,
            "device_id": self.cfg.device_id,
            "attempt": attempt,
            "seq": self.store.next_seq(job_id, attempt),
            "state": state,
            "at": datetime.now(timezone.utc),
            "sweep_id": sweep_id,
            **fields,
        }, strict=False)
        payload = encode_event(event, self.cfg.device_id, self.cfg.max_event_bytes)
        self.store.enqueue(self.events_topic, payload)
        self._outbox_wake.set()

    # -- worker -------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stop.is_set():
            job_id, attempt = self._work.get()  # _shutdown wakes us with _WAKE
            if self._stop.is_set():
                return  # a queued job stays QUEUED and resumes after a restart
            if self.store.get_state(job_id, attempt) != JobState.QUEUED.value:
                continue  # canceled while queued
            spec_json = self.store.get_spec(job_id, attempt)  # one row, not a scan of the queue
            if spec_json is None:
                continue
            job = JobSpec.model_validate_json(spec_json)
            gpu_ids = self.gpu_pool.acquire(job.gpus, self._stop)
            if gpu_ids is None:
                return  # stopping; the job stays QUEUED and resumes after a restart
            try:
                # claimed atomically: a cancel may have won the race for this job
                if self.store.transition(job_id, attempt, JobState.QUEUED.value, JobState.IN_PROGRESS.value):
                    self._run_job(job, attempt, gpu_ids)
            except Exception:
                log.exception("job %s failed inside the agent", job_id)
            finally:
                self.gpu_pool.release(gpu_ids)
            self._status_dirty.set()

    def _run_job(self, job: JobSpec, attempt: int, gpu_ids: list[int]) -> None:
        job_id = job.job_id
        self.emit(job, attempt, JobState.IN_PROGRESS, progress=Progress(phase="setup", epoch=0,
                                                                        epochs=job.workload.epochs))
        run = JobRun(
            job=job,
            attempt=attempt,
            device_id=self.cfg.device_id,
            executor=self.executors[job.backend.value],
            job_dir=self._job_dir(job_id, attempt),
            dataset_root=self.cfg.dataset_root,
            fingerprint=self.fingerprint,
            on_progress=lambda p: self.emit(job, attempt, JobState.IN_PROGRESS, progress=p),
            sampler=self._make_sampler(job, gpu_ids),
            env=self._runner_env(job, gpu_ids),
        )
        with self._running_lock:
            self._running[job_id] = run
            early = self._early_cancels.pop(job_id, None)
        if early is not None:
            run.cancel(early)  # the cancel came between the claim and now
        self._status_dirty.set()
        try:
            outcome = run.run()
        finally:
            with self._running_lock:
                self._running.pop(job_id, None)
                if not self._running:
                    self.metrics_source.detach()
        self._finish(job, attempt, outcome)

    def _job_dir(self, job_id: str, attempt: int) -> Path:
        return self.cfg.state_dir / "jobs" / f"{job_id}-{attempt}"

    def _finish(self, job: JobSpec, attempt: int, outcome: JobOutcome) -> None:
        self.store.set_state(job.job_id, attempt, outcome.state.value)
        fields: dict[str, object] = {}
        if outcome.reason:
            fields["reason"] = outcome.reason[:4000]
        if outcome.error_type:
            fields["error_type"] = outcome.error_type
        if outcome.log_tail and outcome.state is not JobState.SUCCEEDED:
            fields["log_tail"] = outcome.log_tail[-20000:]
        if outcome.result is not None:
            fields["result"] = outcome.result
        self.emit(job, attempt, outcome.state, **fields)

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

    # -- outbox -------------------------------------------------------------------------
    def _publisher(self) -> None:
        inflight: dict[int, int] = {}  # paho mid -> outbox row id
        while True:
            # Woken by every enqueue, ack and (re)connection; the timeout is only a safety net.
            self._outbox_wake.wait(5.0)
            self._outbox_wake.clear()
            while True:
                try:
                    mid = self._acks.get_nowait()
                except queue.Empty:
                    break
                row_id = inflight.pop(mid, None)
                if row_id is not None:
                    self.store.acknowledge(row_id)
            if not self.client.connected:
                inflight.clear()  # paho or we will send them again after reconnecting
                if self._stop.is_set():
                    return
                continue
            if len(inflight) < 100:
                for row in self.store.pending(limit=100, exclude=set(inflight.values())):
                    mid = self.client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                    inflight[mid] = row.id
            if self._stop.is_set() and not inflight and not self.store.outbox_size():
                return


def _hostname() -> str:
    import socket

    return socket.gethostname()
