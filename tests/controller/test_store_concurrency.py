"""Several controller processes opening one fresh SQLite store at once.

A clean CI run on main (2026-12-01) failed with ``sqlite3.OperationalError:
database is locked`` inside ``PRAGMA journal_mode=WAL``: the busy timeout was set
after the switch to WAL, which takes a lock that the other process opening the
same new file held. Here 8 processes open one fresh store at the same instant,
migrate it and write, 20 rounds over, while 2 more processes keep both cores
busy.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from edgebench.controller.store import MIGRATIONS, ResultStore

PROCESSES = 8
ROUNDS = 20


def _open_and_write(start: float, url: str, n: int) -> None:
    """In a forked child: wait for the common instant, open the store, write."""
    from datetime import datetime, timezone

    from edgebench.schemas import JobEvent, JobState
    from tests.helpers import sleep_job

    while time.time() < start:
        time.sleep(0.0005)
    store = ResultStore(url)
    store.record_dispatch("box", sleep_job(f"j{n}"), msg_id=f"m{n}")
    store.ingest_event(JobEvent(job_id=f"j{n}", device_id="box", seq=0, state=JobState.QUEUED,
                                at=datetime.now(timezone.utc)))


def _burn() -> None:
    t = time.time() + 600
    while time.time() < t:
        pass


@pytest.mark.slow
def test_eight_processes_open_a_fresh_store_at_once(tmp_path: Path) -> None:
    # fork: the children start with everything imported, so they reach the store at
    # the same instant (interpreter start-up would spread them over seconds)
    ctx = multiprocessing.get_context("fork")
    burners = [ctx.Process(target=_burn, daemon=True) for _ in range(2)]
    for b in burners:
        b.start()
    try:
        for round_ in range(ROUNDS):
            url = f"sqlite:///{tmp_path / f'round{round_}.db'}"
            start = time.time() + 0.3
            procs = [ctx.Process(target=_open_and_write, args=(start, url, i)) for i in range(PROCESSES)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(120)
            failed = [p.exitcode for p in procs if p.exitcode != 0]
            assert not failed, f"round {round_}: {len(failed)} process(es) failed (exit codes {failed})"
            store = ResultStore(url)
            assert store.count("jobs") == PROCESSES and store.count("events") == PROCESSES
            assert store.schema_version() == max(MIGRATIONS)
            store.close()
    finally:
        for b in burners:
            b.kill()


def test_the_wal_switch_waits_out_an_immediate_lock_refusal() -> None:
    """SQLite can refuse the WAL switch at once, busy timeout or not (two fresh-file openers each holding a
    shared lock): the switch is retried; any other error is not."""
    import sqlite3

    from edgebench.controller import store as store_mod

    class Cursor:
        def __init__(self, refusals: int, error: str = "database is locked") -> None:
            self.refusals, self.error, self.calls = refusals, error, 0

        def execute(self, sql: str) -> None:
            self.calls += 1
            if self.calls <= self.refusals:
                raise sqlite3.OperationalError(self.error)

    cur = Cursor(3)
    store_mod._switch_to_wal(cur)
    assert cur.calls == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        store_mod._switch_to_wal(Cursor(1, "disk I/O error"))
