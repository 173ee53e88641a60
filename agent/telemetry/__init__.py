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

from agent.telemetry.base import RawReading, Source, Telemetry, TelemetryError, TelemetryUnavailable
from agent.telemetry.factory import TelemetryKind, create_telemetry
from agent.telemetry.jetson import JetsonTelemetry, parse_tegrastats_line
from agent.telemetry.nogpu import NoGpuTelemetry
from agent.telemetry.nvml import NvmlTelemetry, decode_clock_event_reasons
from agent.telemetry.sampler import Sampler, SamplerReport, SamplerStats
from agent.telemetry.snapshot import GpuSample, ProcessSample, Snapshot
from agent.telemetry.summary import build_timeseries, summarize
from agent.telemetry.trace import ReplayTelemetry, Trace, TraceRecorder, load_trace

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
