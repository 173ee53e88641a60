"""Shared helpers: fixture paths and a real busy child process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# A child that idles, burns CPU, then idles again, printing time.time() at the
# edges of the busy part like the runner's window markers, and its own CPU time
# there, which is the ground truth for the sampler's CPU percent.
BUSY_CHILD = r"""
import sys, time
idle_s, busy_s, tail_s = (float(a) for a in sys.argv[1:4])
blob = bytearray(64 * 1024 * 1024)  # resident memory the sampler must see
for i in range(0, len(blob), 4096):
    blob[i] = 1
time.sleep(idle_s)
print("begin", time.time(), time.process_time(), flush=True)
end = time.perf_counter() + busy_s
n = 0
while time.perf_counter() < end:
    n += 1
print("end", time.time(), time.process_time(), flush=True)
time.sleep(tail_s)
"""


def nvml_traces() -> list[Path]:
    return sorted(FIXTURES.glob("nvml_trace_*.jsonl"))


def tegrastats_lines() -> list[tuple[str, str]]:
    out = []
    for path in sorted(FIXTURES.glob("tegrastats_*.txt")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                out.append((path.stem, line))
    return out


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[str]]:
    """idle 0.4 s, busy 1.2 s, idle 0.4 s; stdout gives 'begin <t> <cpu_s>' / 'end <t> <cpu_s>'."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CHILD, "0.4", "1.2", "0.4"], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
