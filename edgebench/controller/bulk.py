"""Building many small objects at once: with the cyclic garbage collector paused.

Comparisons over 100,000 stored results build 100,000 rows and runs; none of
them holds a cycle, yet each allocation burst triggers collections that walk
every object alive. On this project's 2-vCPU VM (2026-12-01,
benchmarks/report_scale.py) a history over 100,000 runs took 4.9 s with the
collector and 1.3 s without, and reading the rows 7.7 s against 5.1 s.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block (objects are still freed by reference counting)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
