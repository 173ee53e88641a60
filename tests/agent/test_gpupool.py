"""GPU allocation for concurrent jobs."""

from __future__ import annotations

import threading
import time

import pytest

from edgebench.agent.gpupool import GpuPool


def test_all_or_nothing_and_release() -> None:
    pool = GpuPool([0, 1, 2, 3])
    a = pool.acquire(1)
    b = pool.acquire(2)
    assert a == [0] and b == [1, 2]
    got: list[list[int] | None] = []
    t = threading.Thread(target=lambda: got.append(pool.acquire(4)))
    t.start()
    time.sleep(0.3)
    assert not got  # waits: only GPU 3 is free
    pool.release(a)
    pool.release(b)
    t.join(2)
    assert got == [[0, 1, 2, 3]]


def test_cpu_jobs_take_no_gpu_and_stop_unblocks() -> None:
    pool = GpuPool([0])
    assert pool.acquire(0) == []
    held = pool.acquire(1)
    stop = threading.Event()
    stop.set()
    assert pool.acquire(1, stop) is None
    pool.release(held or [])
    with pytest.raises(ValueError):
        pool.acquire(2)
