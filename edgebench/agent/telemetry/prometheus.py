"""Prometheus exposition of the latest snapshot, named like NVIDIA's dcgm-exporter.

A custom collector reads the newest snapshot at scrape time, so a scrape
never triggers extra NVML calls while a job runs (the sampler already took
them) and dashboards built for dcgm-exporter work unchanged. Metric names
and labels follow dcgm-exporter (``gpu``, ``UUID``, ``device``,
``modelName``, ``Hostname``); edgebench adds ``device_id`` and its own
``edgebench_*`` metrics for the runner's process tree and the current job.
All are gauges, the energy counter included: prometheus-client would append
``_total`` to a counter's name and break the dcgm-exporter name.
A metric a device cannot report is absent from the scrape, never 0.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from edgebench.agent.telemetry.base import Telemetry
from edgebench.agent.telemetry.sampler import Sampler
from edgebench.agent.telemetry.snapshot import GpuSample, Snapshot
from edgebench.schemas.status import GpuInfo

MIB = 1024 * 1024

GPU_LABELS = ["gpu", "UUID", "device", "modelName", "Hostname", "device_id"]
RUNNER_LABELS = ["Hostname", "device_id", "job_id"]

ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"

# (name, help, getter) in dcgm-exporter's units: FB in MiB, power in W, energy in mJ.
DCGM_GAUGES: tuple[tuple[str, str, Callable[[GpuSample], float | None]], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %): fraction of time any kernel ran.", lambda g: g.util_pct),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda g: g.mem_util_pct),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda g: g.sm_clock_mhz),
    ("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", lambda g: g.mem_clock_mhz),
    (
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        lambda g: None if g.mem_used_bytes is None else g.mem_used_bytes / MIB,
    ),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
    (ENERGY_METRIC, "Total energy consumption since boot (in mJ).", lambda g: g.energy_mj),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temperature_c),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Enforced power limit (in W).", lambda g: g.power_limit_w),
)


class SnapshotSource(Protocol):
    def latest(self) -> Snapshot | None: ...


class LiveSource:
    """Reads the telemetry at scrape time (between jobs), at most once per ``min_interval_s``."""

    def __init__(self, telemetry: Telemetry, min_interval_s: float = 1.0) -> None:
        self.telemetry = telemetry
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None

    def latest(self) -> Snapshot | None:
        with self._lock:
            now = time.time()
            if self._cached is None or now - self._cached.t >= self.min_interval_s:
                raw = self.telemetry.read_raw(fresh=True)  # between jobs: every value, once a scrape
                self._cached = Snapshot(t=now, gpus=self.telemetry.convert(raw), process=None)
            return self._cached

    def inventory(self) -> list[GpuInfo]:
        return self.telemetry.inventory()


class MetricsSource:
    """What the agent hands the metrics server once: the running job's sampler, else a live read.

    Call :meth:`attach` when a job starts and :meth:`detach` when it ends.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self._live = LiveSource(telemetry)
        self._lock = threading.Lock()
        self._sampler: Sampler | None = None
        self._job_id: str | None = None

    def attach(self, sampler: Sampler, job_id: str | None = None) -> None:
        with self._lock:
            self._sampler = sampler
            self._job_id = job_id if job_id is not None else sampler.job_id

    def detach(self) -> None:
        with self._lock:
            self._sampler = None
            self._job_id = None

    @property
    def job_id(self) -> str | None:
        return self._job_id

    def latest(self) -> Snapshot | None:
        with self._lock:
            sampler = self._sampler
        if sampler is not None:
            snap = sampler.latest()
            if snap is not None:
                return snap
        return self._live.latest()

    def inventory(self) -> list[GpuInfo]:
        return self._live.inventory()


def _as_source(obj: Any) -> Any:
    if isinstance(obj, Telemetry):
        return LiveSource(obj)
    if not hasattr(obj, "latest"):
        raise TypeError(f"not a snapshot source: {obj!r}")
    return obj


def _inventory_of(obj: Any) -> list[GpuInfo]:
    if hasattr(obj, "inventory"):
        return list(obj.inventory())
    telemetry = getattr(obj, "telemetry", None)
    if isinstance(telemetry, Telemetry):
        return telemetry.inventory()
    return []


class TelemetryCollector(Collector):
    """Builds the metric families from ``source.latest()`` at each scrape."""

    def __init__(self, source: Any, device_id: str, hostname: str | None = None) -> None:
        self.source = _as_source(source)
        self.device_id = device_id
        self.hostname = hostname or socket.gethostname()
        self._inventory: dict[int, GpuInfo] | None = None
        # A read plan may leave the energy counter unread on most ticks (None):
        # a scrape then shows the last reading rather than dropping the series.
        self._last_energy_mj: dict[int, float] = {}

    def _info(self) -> dict[int, GpuInfo]:
        if self._inventory is None:
            self._inventory = {g.index: g for g in _inventory_of(self.source)}
        return self._inventory

    def _gpu_labels(self, g: GpuSample) -> list[str]:
        info = self._info().get(g.index)
        return [
            str(g.index),
            (info.uuid if info else None) or "",
            f"nvidia{g.index}",
            (info.name if info else None) or "",
            self.hostname,
            self.device_id,
        ]

    def collect(self) -> Iterator[Metric]:
        snap = self.source.latest()
        job_id = getattr(self.source, "job_id", None) or ""
        gpus = snap.gpus if snap is not None else ()
        for g in gpus:
            if g.energy_mj is not None:
                self._last_energy_mj[g.index] = g.energy_mj
        for name, doc, get in DCGM_GAUGES:
            fam = GaugeMetricFamily(name, doc, labels=GPU_LABELS)
            for g in gpus:
                value = get(g)
                if value is None and name == ENERGY_METRIC:
                    value = self._last_energy_mj.get(g.index)
                if value is not None:
                    fam.add_metric(self._gpu_labels(g), float(value))
            yield fam

        proc_mem = GaugeMetricFamily(
            "edgebench_runner_gpu_memory_bytes",
            "GPU memory held by the running job's process tree (NVML per-process list).",
            labels=[*GPU_LABELS, "job_id"],
        )
        reasons = GaugeMetricFamily(
            "edgebench_gpu_clock_event_reason",
            "1 for each clock event (throttle) reason active at the last sample.",
            labels=[*GPU_LABELS, "reason"],
        )
        for g in gpus:
            if g.process_mem_bytes is not None:
                proc_mem.add_metric([*self._gpu_labels(g), job_id], float(g.process_mem_bytes))
            for reason in g.clock_event_reasons or ():
                reasons.add_metric([*self._gpu_labels(g), reason], 1.0)
        yield proc_mem
        yield reasons

        runner = [self.hostname, self.device_id, job_id]
        cpu = GaugeMetricFamily(
            "edgebench_runner_cpu_percent",
            "CPU of the running job's process tree, percent of one core.",
            labels=RUNNER_LABELS,
        )
        rss = GaugeMetricFamily(
            "edgebench_runner_rss_bytes", "Summed RSS of the running job's process tree.", labels=RUNNER_LABELS
        )
        proc = snap.process if snap is not None else None
        if proc is not None and proc.cpu_pct is not None:
            cpu.add_metric(runner, proc.cpu_pct)
        if proc is not None and proc.rss_bytes is not None:
            rss.add_metric(runner, float(proc.rss_bytes))
        yield cpu
        yield rss

        host = snap.host if snap is not None else None
        busy = GaugeMetricFamily(
            "edgebench_host_cpu_busy_percent",
            "CPU busy on the whole host, percent of one core (the validity record's host load).",
            labels=["Hostname", "device_id"],
        )
        other = GaugeMetricFamily(
            "edgebench_host_other_cpu_percent",
            "CPU busy outside the running job's process tree and the agent, percent of one core.",
            labels=["Hostname", "device_id"],
        )
        if host is not None and host.busy_cpu_pct is not None:
            busy.add_metric([self.hostname, self.device_id], host.busy_cpu_pct)
            runner_pct = proc.cpu_pct if proc is not None and proc.cpu_pct is not None else 0.0
            other.add_metric([self.hostname, self.device_id],
                             max(0.0, host.busy_cpu_pct - runner_pct - (host.agent_cpu_pct or 0.0)))
        yield busy
        yield other

        job = GaugeMetricFamily(
            "edgebench_job_running", "1 while a job runs on this device, with its id.", labels=RUNNER_LABELS
        )
        job.add_metric(runner, 1.0 if job_id else 0.0)
        yield job
        if snap is not None:
            ts = GaugeMetricFamily(
                "edgebench_telemetry_sample_timestamp_seconds",
                "Unix time of the snapshot these values come from.",
                labels=["Hostname", "device_id"],
            )
            ts.add_metric([self.hostname, self.device_id], snap.t)
            yield ts


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread
    registry: CollectorRegistry
    collector: TelemetryCollector

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int,
    sampler_or_source: Any,
    device_id: str,
    addr: str = "0.0.0.0",
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
) -> MetricsServer:
    """Serve /metrics on ``addr:port`` (0 picks a free port) from a Sampler, MetricsSource or Telemetry.

    With ``certfile`` and ``keyfile`` the endpoint speaks HTTPS only (prometheus-client's own TLS, TLS 1.2
    at least); with ``client_cafile`` too, a scraper must present a certificate that CA signed.
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("metrics TLS needs both a certificate and a key file")
    if client_cafile is not None and certfile is None:
        raise ValueError("metrics client certificates need TLS: give a certificate and a key file too")
    registry = CollectorRegistry(auto_describe=False)
    collector = TelemetryCollector(sampler_or_source, device_id)
    registry.register(collector)
    tls: dict[str, Any] = {}
    if certfile is not None:
        tls = {"certfile": certfile, "keyfile": keyfile, "client_cafile": client_cafile,
               "client_auth_required": client_cafile is not None, "tls_min_version": ssl.TLSVersion.TLSv1_2}
    server, thread = start_http_server(port, addr=addr, registry=registry, **tls)
    return MetricsServer(server=server, thread=thread, registry=registry, collector=collector)
