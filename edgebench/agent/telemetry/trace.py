"""Record raw telemetry to JSON lines and replay it.

CI has no GPU, so the NVML code paths are tested by replaying traces recorded
on real cards (tests/fixtures/nvml_trace_*.jsonl) through the same pure
conversion and summary functions that run live. :class:`ReplayTelemetry` is a
stand-in for absent hardware only; it never fabricates a reading.

Format (one JSON object per line, ``kind`` first):

- ``{"kind": "header", "format": 1, "source": "nvml", "interval_s": 0.1,
  "inventory": [GpuInfo...], "host": ..., "recorded_at": ..., "note": ...}``
- ``{"kind": "tick", "t": unix_s, "raw": {...}, "proc": {"pids": [...],
  "cpu_pct": ..., "rss_bytes": ...}, "host": {...}, "state": {...}}`` where
  ``raw`` is what the implementation's ``read_raw`` returned (NVML units: mW,
  mJ, bytes, MHz, %), ``host`` the :class:`HostSample` fields and ``state``
  the telemetry's ``device_state()`` (both optional: traces recorded before
  the validity record have neither)
- ``{"kind": "window", "edge": "begin" | "end", "t": unix_s}``
- ``{"kind": "end", "t": unix_s, ...}`` (optional; free-form facts about the run)
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgebench.agent.telemetry import jetson, nvml
from edgebench.agent.telemetry.base import RawReading, Source, Telemetry, TelemetryError
from edgebench.agent.telemetry.snapshot import GpuSample, HostSample, ProcessSample, Snapshot
from edgebench.schemas.status import GpuInfo

TRACE_FORMAT = 1

Converter = Callable[[RawReading, Iterable[int]], tuple[GpuSample, ...]]
CONVERTERS: dict[str, Converter] = {
    "nvml": nvml.samples_from_raw,
    "jetson": jetson.samples_from_raw,
    "none": lambda raw, pids: (),
}


class TraceFormatError(TelemetryError):
    """The file is not a telemetry trace this code understands."""


class TraceRecorder:
    """Appends ticks and window markers to a JSON-lines file; thread-safe."""

    def __init__(
        self,
        path: str | Path,
        source: Source,
        inventory: Sequence[GpuInfo],
        interval_s: float,
        note: str = "",
        *,
        logical_cpus: int | None = None,
        max_cpu_freq_mhz: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._write(
            {
                "kind": "header",
                "format": TRACE_FORMAT,
                "source": source,
                "interval_s": interval_s,
                "inventory": [g.model_dump(mode="json") for g in inventory],
                "host": socket.gethostname(),
                "recorded_at": time.time(),
                "note": note,
                "logical_cpus": logical_cpus,
                "max_cpu_freq_mhz": max_cpu_freq_mhz,
            }
        )

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")

    def tick(self, t: float, raw: RawReading, proc: ProcessSample | None, host: HostSample | None = None,
             state: dict[str, Any] | None = None) -> None:
        line: dict[str, Any] = {"kind": "tick", "t": t, "raw": raw, "proc": _proc_to_json(proc)}
        if host is not None:
            line["host"] = _host_to_json(host)
        if state:
            line["state"] = state
        self._write(line)

    def window(self, edge: str, t: float) -> None:
        self._write({"kind": "window", "edge": edge, "t": t})

    def end(self, t: float, **facts: Any) -> None:
        self._write({"kind": "end", "t": t, **facts})

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _proc_to_json(proc: ProcessSample | None) -> dict[str, Any] | None:
    if proc is None:
        return None
    return {"pids": sorted(proc.pids), "cpu_pct": proc.cpu_pct, "rss_bytes": proc.rss_bytes}


def _host_to_json(host: HostSample) -> dict[str, Any]:
    doc = {f.name: getattr(host, f.name) for f in dataclasses.fields(host)}
    for key in ("governors",):
        if doc[key] is not None:
            doc[key] = list(doc[key])
    return doc


def _host_from_json(obj: dict[str, Any] | None) -> HostSample | None:
    if not isinstance(obj, dict):
        return None
    known = {f.name for f in dataclasses.fields(HostSample)}
    doc = {k: v for k, v in obj.items() if k in known}
    if doc.get("governors") is not None:
        doc["governors"] = tuple(str(g) for g in doc["governors"])
    return HostSample(**doc)


def _proc_from_json(obj: dict[str, Any] | None) -> ProcessSample | None:
    if obj is None:
        return None
    return ProcessSample(
        pids=frozenset(obj.get("pids", [])), cpu_pct=obj.get("cpu_pct"), rss_bytes=obj.get("rss_bytes")
    )


@dataclass(frozen=True)
class TraceTick:
    t: float
    raw: RawReading
    proc: ProcessSample | None
    host: HostSample | None = None
    state: dict[str, Any] | None = None


@dataclass(frozen=True)
class Trace:
    source: Source
    interval_s: float
    inventory: list[GpuInfo]
    ticks: list[TraceTick]
    windows: list[tuple[float, float]]
    header: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None

    def host_facts(self) -> dict[str, Any]:
        """What :func:`summary.summarize` needs to know about the recording host (validity record)."""
        cpus, freq = self.header.get("logical_cpus"), self.header.get("max_cpu_freq_mhz")
        return {"logical_cpus": int(cpus) if isinstance(cpus, int) else None,
                "max_cpu_freq_mhz": float(freq) if isinstance(freq, (int, float)) else None}

    def snapshots(self) -> list[Snapshot]:
        """Replay every tick through the live conversion code."""
        convert = CONVERTERS[self.source]
        out = []
        for tick in self.ticks:
            pids = tick.proc.pids if tick.proc is not None else frozenset()
            out.append(Snapshot(t=tick.t, gpus=convert(tick.raw, pids), process=tick.proc, host=tick.host,
                                state=tick.state))
        return out


def pair_windows(markers: Iterable[tuple[str, float]]) -> list[tuple[float, float]]:
    """(edge, t) markers -> closed (begin, end) windows; unmatched ends are dropped."""
    windows: list[tuple[float, float]] = []
    begin: float | None = None
    for edge, t in markers:
        if edge == "begin":
            begin = t
        elif edge == "end" and begin is not None:
            if t >= begin:
                windows.append((begin, t))
            begin = None
    return windows


def load_trace(path: str | Path) -> Trace:
    header: dict[str, Any] | None = None
    ticks: list[TraceTick] = []
    markers: list[tuple[str, float]] = []
    end = None
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(f"{path}:{lineno}: not JSON: {exc}") from exc
            kind = obj.get("kind")
            if kind == "header":
                header = obj
            elif kind == "tick":
                state = obj.get("state")
                ticks.append(TraceTick(float(obj["t"]), obj.get("raw") or {}, _proc_from_json(obj.get("proc")),
                                       _host_from_json(obj.get("host")), state if isinstance(state, dict) else None))
            elif kind == "window":
                markers.append((obj["edge"], float(obj["t"])))
            elif kind == "end":
                end = obj
    if header is None:
        raise TraceFormatError(f"{path}: no header line")
    if header.get("format") != TRACE_FORMAT:
        raise TraceFormatError(f"{path}: trace format {header.get('format')!r}, expected {TRACE_FORMAT}")
    source = header.get("source")
    if source not in CONVERTERS:
        raise TraceFormatError(f"{path}: unknown source {source!r}")
    return Trace(
        source=source,
        interval_s=float(header.get("interval_s", 0.1)),
        inventory=[GpuInfo.model_validate(g) for g in header.get("inventory", [])],
        ticks=ticks,
        windows=pair_windows(markers),
        header=header,
        end=end,
    )


class ReplayTelemetry(Telemetry):
    """Feeds recorded raw readings back, one per :meth:`read_raw`; the last one repeats at the end.

    Only for tests and CI, where the recorded hardware is absent.
    """

    def __init__(self, trace: Trace | str | Path) -> None:
        self.trace = trace if isinstance(trace, Trace) else load_trace(trace)
        if not self.trace.ticks:
            raise TraceFormatError("trace holds no tick")
        self._next = 0
        self._lock = threading.Lock()

    @property
    def source(self) -> Source:
        return self.trace.source

    def inventory(self) -> list[GpuInfo]:
        return list(self.trace.inventory)

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self.trace.ticks)

    def read_raw(self, indices: Sequence[int] | None = None, *, fresh: bool = False) -> RawReading:
        with self._lock:
            tick = self.trace.ticks[min(self._next, len(self.trace.ticks) - 1)]
            self._next += 1
        raw = tick.raw
        if indices is not None and "devices" in raw:
            wanted = set(indices)
            raw = {**raw, "devices": [d for d in raw["devices"] if d.get("index") in wanted]}
        return raw

    def convert(self, raw: RawReading, pids: Iterable[int] = ()) -> tuple[GpuSample, ...]:
        return CONVERTERS[self.trace.source](raw, pids)
