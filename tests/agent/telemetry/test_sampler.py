"""The Sampler over real child processes, with the runner's window markers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edgebench.agent.telemetry import NoGpuTelemetry, ReplayTelemetry, Sampler, load_trace, summarize
from edgebench.agent.telemetry.process import ProcessTreeMeter
from edgebench.agent.telemetry.sampler import SamplerStateError
from edgebench.schemas.job import MemoryPolicy

from .conftest import nvml_traces


def read_marker(proc: subprocess.Popen[str], edge: str) -> tuple[float, float]:
    """(time.time(), the child's own CPU seconds) at a window edge."""
    assert proc.stdout is not None
    word, t, cpu_s = proc.stdout.readline().split()
    assert word == edge
    return float(t), float(cpu_s)


def test_none_telemetry_over_a_busy_child(busy_child: subprocess.Popen[str], tmp_path: Path) -> None:
    sampler = Sampler(NoGpuTelemetry(), interval_s=0.05, trace_path=tmp_path / "trace.jsonl", job_id="job-1")
    sampler.start(busy_child.pid)
    assert sampler.latest() is not None  # first tick taken by start()
    t_begin, cpu_begin = read_marker(busy_child, "begin")
    sampler.mark_window("begin", t_begin)
    t_end, cpu_end = read_marker(busy_child, "end")
    sampler.mark_window("end", t_end)
    busy_child.wait(timeout=10)
    truth_pct = 100.0 * (cpu_end - cpu_begin) / (t_end - t_begin)  # below 100 on a loaded box
    report = sampler.stop(window_images=1200, measured_epochs=1, memory_policy=MemoryPolicy.GROW)

    s = report.summary
    assert s is not None and s.source == "none"
    assert s.gpus == [] and s.energy_j is None and s.img_per_j is None and s.energy_j_per_epoch is None
    assert s.memory_policy == "grow"
    assert s.window_s == pytest.approx(1.2, abs=0.15)
    assert s.samples >= 10
    # The busy loop's own account of its CPU share; the edges of the window
    # straddle idle time, hence the tolerance.
    assert s.cpu_pct is not None and s.cpu_pct.mean == pytest.approx(truth_pct, abs=20)
    assert truth_pct > 15
    assert s.rss_bytes_peak is not None and s.rss_bytes_peak > 64 * 1024 * 1024

    # Outside the window the child slept: the summary must not have averaged that in.
    (b, e) = report.windows[0]
    idle = [
        x.process.cpu_pct
        for x in report.snapshots
        if x.process and x.process.cpu_pct is not None and not b - 0.1 < x.t < e + 0.1
    ]
    assert idle and min(idle) < 10

    ts = report.timeseries
    assert ts.window is not None and ts.window[1] - ts.window[0] == pytest.approx(1.2, abs=0.15)
    assert set(ts.columns) == {"cpu_pct", "rss_mib"}
    assert report.stats.ticks >= 20 and report.stats.errors == 0

    # The trace replays to the same summary through the same pure function.
    trace = load_trace(tmp_path / "trace.jsonl")
    assert trace.source == "none" and trace.windows == list(report.windows)
    replayed = summarize(
        trace.snapshots(),
        trace.windows,
        source=trace.source,
        interval_s=trace.interval_s,
        window_images=1200,
        measured_epochs=1,
        memory_policy="grow",
        **trace.host_facts(),
    )
    assert replayed == s
    assert trace.end is not None and trace.end["window_images"] == 1200


GRANDCHILD = r"""
import subprocess, sys
# a fixed amount of CPU time (process_time), whatever share a loaded machine gives it
code = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass\n"
subprocess.run([sys.executable, "-c", code], check=True)
"""


def _wait_for_cpu(proc: subprocess.Popen[bytes], cpu_s: float, timeout_s: float = 30.0) -> None:
    """Until the process's children have burnt ``cpu_s`` of CPU time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
            if sum(k.cpu_times().user + k.cpu_times().system for k in kids) >= cpu_s:
                return
        except psutil.Error:
            pass
        time.sleep(0.02)
    raise AssertionError(f"the grandchild did not burn {cpu_s} s of CPU within {timeout_s} s")


def test_process_tree_includes_grandchildren() -> None:
    proc = subprocess.Popen([sys.executable, "-c", GRANDCHILD])
    try:
        meter = ProcessTreeMeter(proc.pid, rescan_s=0.0)  # list the tree at every tick
        t0 = time.time()
        meter.sample(t0)
        _wait_for_cpu(proc, 0.1)  # the grandchild has burnt 0.1 s, however loaded the machine is
        t1 = time.time()
        sample = meter.sample(t1)
        assert proc.pid in sample.pids and len(sample.pids) >= 2
        # the grandchild's busy loop is counted (the parent only waits)
        assert sample.cpu_pct is not None and sample.cpu_pct / 100.0 * (t1 - t0) >= 0.09
        assert sample.rss_bytes is not None and sample.rss_bytes > 0
    finally:
        proc.wait(timeout=10)
    gone = meter.sample(time.time())
    assert gone.pids == frozenset() and gone.cpu_pct is None and gone.rss_bytes is None


def test_a_late_found_worker_brings_all_its_cpu_time() -> None:
    """Between listings (rescan_s) a new worker is unseen; once found, none of its CPU is lost."""
    proc = subprocess.Popen([sys.executable, "-c", GRANDCHILD.replace("1.0", "3.0")])
    try:
        meter = ProcessTreeMeter(proc.pid, rescan_s=1.0)
        t_first = time.time()
        meter.sample(t_first)  # the grandchild does not exist yet
        time.sleep(0.3)  # well within rescan_s: the next tick does not list the tree again
        t_early = time.time()
        early = meter.sample(t_early)
        assert early.pids == frozenset({proc.pid})  # not listed again yet
        _wait_for_cpu(proc, 0.15)
        time.sleep(max(0.0, 1.05 - (time.time() - t_first)))  # past the next listing
        t_late = time.time()
        late = meter.sample(t_late)
        (child,) = [p for p in psutil.Process(proc.pid).children() if p.pid in late.pids]
        times = child.cpu_times()
        child_cpu_s = times.user + times.system
        assert late.cpu_pct is not None
        attributed_s = late.cpu_pct / 100.0 * (t_late - t_early)
        # everything the grandchild burnt since birth (before t_early too) lands in this tick
        assert child_cpu_s > 0.1
        assert attributed_s >= 0.9 * child_cpu_s
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait(timeout=10)


def test_extra_pids_are_part_of_the_tree(busy_child: subprocess.Popen[str]) -> None:
    meter = ProcessTreeMeter(os.getpid(), extra_pids=[busy_child.pid])
    sample = meter.sample(time.time())
    assert {os.getpid(), busy_child.pid} <= sample.pids


def test_open_window_is_closed_at_stop_and_order_is_enforced(busy_child: subprocess.Popen[str]) -> None:
    sampler = Sampler(NoGpuTelemetry(), interval_s=0.05)
    with pytest.raises(SamplerStateError):
        sampler.stop()
    with pytest.raises(ValueError):
        sampler.mark_window("middle", 0.0)  # type: ignore[arg-type]
    sampler.start(busy_child.pid)
    with pytest.raises(SamplerStateError):
        sampler.start(busy_child.pid)
    sampler.mark_window("begin", time.time())
    time.sleep(0.3)
    report = sampler.stop(10, 1, None)
    assert len(report.windows) == 1 and report.summary is not None
    assert report.windows[0][1] == pytest.approx(report.snapshots[-1].t)
    assert not sampler.running
    assert sampler.stop(10, 1, None).windows == report.windows  # idempotent


def test_no_window_means_no_summary(busy_child: subprocess.Popen[str]) -> None:
    sampler = Sampler(NoGpuTelemetry(), interval_s=0.05)
    sampler.start(busy_child.pid)
    time.sleep(0.2)
    report = sampler.stop(0, 0, None)
    assert report.summary is None
    assert report.timeseries.t_s and report.timeseries.window is None


@pytest.mark.parametrize("path", nvml_traces()[:1], ids=lambda p: p.name)
def test_sampler_with_replayed_nvml_and_gpu_filter(path: Path, busy_child: subprocess.Popen[str]) -> None:
    replay = ReplayTelemetry(path)
    index = replay.trace.ticks[0].raw["devices"][0]["index"]  # a trace may hold only the job's GPU
    sampler = Sampler(replay, interval_s=0.02, gpu_indices=[index])
    sampler.start(busy_child.pid)
    t0 = time.time()
    sampler.mark_window("begin", t0)
    time.sleep(0.3)
    sampler.mark_window("end", time.time())
    report = sampler.stop(window_images=100, measured_epochs=1, memory_policy="default")
    s = report.summary
    assert s is not None and s.source == "nvml"
    assert [g.index for g in s.gpus] == [index]
    assert s.gpus[0].name == {g.index: g for g in sampler.telemetry.inventory()}[index].name
    assert s.gpus[0].power_w is not None and s.energy_j is not None and s.energy_j > 0
    latest = sampler.latest()
    assert latest is not None and [g.index for g in latest.gpus] == [index]


def test_bad_interval() -> None:
    with pytest.raises(ValueError):
        Sampler(NoGpuTelemetry(), interval_s=0)
