"""GPU and system telemetry: one interface, NVML / Jetson / no-GPU implementations.

Typical use by the agent::

    telemetry = create_telemetry("auto")
    sampler = Sampler(telemetry, interval_s=0.1)
    sampler.start(runner_pid)
    sampler.mark_window("begin", t_begin)   # from the runner's window markers
    sampler.mark_window("end", t_end)
    report = sampler.stop(window_images, measured_epochs, memory_policy)

See docs/TELEMETRY.md for what every metric means.
"""

from edgebench.agent.telemetry.base import RawReading, Source, Telemetry, TelemetryError, TelemetryUnavailable
from edgebench.agent.telemetry.factory import TelemetryKind, create_telemetry
from edgebench.agent.telemetry.jetson import JetsonTelemetry, parse_tegrastats_line
from edgebench.agent.telemetry.nogpu import NoGpuTelemetry
from edgebench.agent.telemetry.nvml import NvmlTelemetry, decode_clock_event_reasons
from edgebench.agent.telemetry.sampler import Sampler, SamplerReport, SamplerStats
from edgebench.agent.telemetry.snapshot import GpuSample, ProcessSample, Snapshot
from edgebench.agent.telemetry.summary import build_timeseries, summarize
from edgebench.agent.telemetry.trace import ReplayTelemetry, Trace, TraceRecorder, load_trace

__all__ = [
    "GpuSample",
    "JetsonTelemetry",
    "NoGpuTelemetry",
    "NvmlTelemetry",
    "ProcessSample",
    "RawReading",
    "ReplayTelemetry",
    "Sampler",
    "SamplerReport",
    "SamplerStats",
    "Snapshot",
    "Source",
    "Telemetry",
    "TelemetryError",
    "TelemetryKind",
    "TelemetryUnavailable",
    "Trace",
    "TraceRecorder",
    "build_timeseries",
    "create_telemetry",
    "decode_clock_event_reasons",
    "load_trace",
    "parse_tegrastats_line",
    "summarize",
]
