"""The results store shared by several controllers, on SQLite and on a real
PostgreSQL server: duplicate delivery, two stores on one database, concurrent
first-time migration, concurrent ingestion from threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from edgebench.controller.store import MIGRATIONS, ResultStore, schema_migrations
from edgebench.schemas import AgentStatus, JobEvent, JobState
from tests.helpers import sleep_job

STATES = (JobState.QUEUED, JobState.IN_PROGRESS, JobState.SUCCEEDED)


def _events(job_id: str, device_id: str) -> list[JobEvent]:
    """A job's whole life as an agent publishes it."""
    return [JobEvent(job_id=job_id, device_id=device_id, seq=seq, state=state, at=datetime.now(timezone.utc))
            for seq, state in enumerate(STATES)]


def _ingest_all(url: str, job_ids: list[str], device_id: str) -> int:
    """Record and ingest every event of these jobs; returns how many were new."""
    store = ResultStore(url)
    try:
        new = 0
        for job_id in job_ids:
            store.record_dispatch(device_id, sleep_job(job_id))
            new += sum(store.ingest_event(ev) for ev in _events(job_id, device_id))
        return new
    finally:
        store.close()


def _open_at(url: str, start_at: float) -> int:
    """Start a controller (migrate an empty database) at a given wall-clock time."""
    time.sleep(max(0.0, start_at - time.time()))
    store = ResultStore(url)
    try:
        return store.schema_version()
    finally:
        store.close()


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # Separate processes with their own connections, like controllers on
    # separate workstations. fork: spawning fresh interpreters costs seconds here.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def test_duplicate_delivery_is_stored_once(store_url: str) -> None:
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j1"))
    store.record_dispatch("box", sleep_job("j1"))  # a re-sent dispatch is ignored too
    events = _events("j1", "box")
    assert [store.ingest_event(ev) for ev in events] == [True, True, True]
    # the broker redelivers everything (QoS 1), in another order
    assert [store.ingest_event(ev) for ev in reversed(events)] == [False, False, False]
    assert (store.count("jobs"), store.count("events"), store.count("results")) == (1, 3, 1)
    [row] = store.results()
    assert (row.outcome, row.backend, row.model) == ("OK", "sleep", "mlp")
    assert store.job_states([("j1", "box")]) == {("j1", "box"): "SUCCEEDED"}
    store.close()


def test_two_controllers_see_each_others_results(store_url: str) -> None:
    a, b = ResultStore(store_url), ResultStore(store_url)
    a.record_dispatch("box-a", sleep_job("ja"))
    b.record_dispatch("box-b", sleep_job("jb"))
    for ev in _events("ja", "box-a"):
        a.ingest_event(ev)
    for ev in _events("jb", "box-b"):
        b.ingest_event(ev)
    # b also got a's events (both collectors subscribed): nothing doubles
    assert not any(b.ingest_event(ev) for ev in _events("ja", "box-a"))
    for store in (a, b):
        assert sorted(r.job_id for r in store.results()) == ["ja", "jb"]
        assert [e.seq for e in store.events_for("ja")] == [0, 1, 2]
    status = AgentStatus(device_id="box-a", fleet="f", online=True, at=datetime.now(timezone.utc),
                         agent_version="0", tags=[], backends=[], gpus=[])
    a.upsert_device(status)
    b.upsert_device(status.model_copy(update={"online": False, "at": datetime.now(timezone.utc)}))
    assert [(d.device_id, d.online) for d in a.devices()] == [("box-a", False)]
    a.close()
    b.close()


def test_concurrent_first_migration_is_applied_once(store_url: str) -> None:
    start_at = time.time() + 1.0  # after every worker process has started
    with _process_pool(4) as pool:
        versions = list(pool.map(_open_at, [store_url] * 4, [start_at] * 4))
    assert versions == [max(MIGRATIONS)] * 4
    store = ResultStore(store_url)
    with store.engine.connect() as conn:
        applied = [r[0] for r in conn.execute(sa.select(schema_migrations.c.version))]
    assert sorted(applied) == sorted(MIGRATIONS)
    assert store.count("results") == 0
    store.close()


def test_concurrent_ingestion_from_threads(store_url: str) -> None:
    ResultStore(store_url).close()
    jobs = [f"t{i}" for i in range(20)]
    barrier = threading.Barrier(3)

    def deliver(order: int) -> int:
        barrier.wait()
        # every thread delivers every job (duplicates across collectors), in its own order
        return _ingest_all(store_url, jobs[::order], "box")

    with ThreadPoolExecutor(3) as pool:
        new = list(pool.map(deliver, [1, -1, 1]))
    assert sum(new) == len(jobs) * len(STATES)
    store = ResultStore(store_url)
    assert (store.count("events"), store.count("results")) == (len(jobs) * len(STATES), len(jobs))
    assert set(store.job_states([(j, "box") for j in jobs]).values()) == {"SUCCEEDED"}
    store.close()


def test_concurrent_ingestion_from_processes(store_url: str) -> None:
    ResultStore(store_url).close()
    shared = [f"s{i}" for i in range(10)]
    own = {w: [f"p{w}-{i}" for i in range(10)] for w in range(3)}
    with _process_pool(3) as pool:
        futures = [pool.submit(_ingest_all, store_url, shared + own[w], "box") for w in range(3)]
        new = [f.result() for f in futures]
    expected_jobs = len(shared) + sum(len(v) for v in own.values())
    assert sum(new) == expected_jobs * len(STATES)  # each shared event counted new exactly once
    store = ResultStore(store_url)
    assert (store.count("jobs"), store.count("events"), store.count("results")) == (
        expected_jobs, expected_jobs * len(STATES), expected_jobs)
    store.close()


@pytest.mark.postgres
def test_postgres_store_is_really_postgres(pg_server) -> None:  # type: ignore[no-untyped-def]
    url = pg_server.create_database()
    store = ResultStore(url)
    assert store.engine.dialect.name == "postgresql"
    assert url.startswith("postgresql+psycopg://")
    store.close()
