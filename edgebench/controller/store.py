"""The controller's results store: SQLite by default, PostgreSQL for teams.

Ingestion is idempotent: events are keyed by (job, device, attempt, seq) and
results by (job, device, attempt), so whatever the broker redelivers, each is
stored once. Each event passes the job state machine (controller/ingest.py) in
the same transaction that stores it: a state change and its event commit
together. Whatever a device sends that the store cannot or must not take (an
unknown job, a forged transition, a value no column holds) is kept aside in
``dead_letters`` with the reason, and acknowledged: one bad message never stops
ingestion. Migrations are numbered and recorded in schema_migrations.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from edgebench.common.text import printable
from edgebench.controller.errors import ControllerError, StoreMissing
from edgebench.controller.facts import facts_values
from edgebench.controller.ingest import Inbound, decide
from edgebench.controller.store_reads import StoreReads
from edgebench.controller.store_rows import DeadLetter, FactRow, OpenJob, Redispatch, ResultRow, _now
from edgebench.controller.store_schema import (
    FACT_IDENTITY,
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    _facts_of,
    dead_letters,
    devices,
    events,
    jobs,
    metadata,
    result_facts,
    results,
    schema_migrations,
    sent_messages,
)
from edgebench.schemas import TERMINAL_STATES, AgentStatus, JobEvent, JobSpec, JobState

log = logging.getLogger(__name__)

# what other modules import from here (the tables and rows live in store_schema / store_rows)
__all__ = ["FACT_IDENTITY", "MIGRATIONS", "MIGRATION_LOCK_KEY", "DeadLetter", "FactRow", "OpenJob", "Redispatch",
           "ResultRow", "ResultStore", "StoreError", "dead_letters", "default_store_url", "devices", "events",
           "jobs", "metadata", "result_facts", "results", "schema_migrations", "sent_messages"]

# Ingestion's statements, built once with bind parameters (see ResultStore._ignoring).
_JOB_KEY = sa.and_(jobs.c.job_id == sa.bindparam("k_job_id"), jobs.c.device_id == sa.bindparam("k_device_id"))
_JOB_ROW = sa.select(jobs.c.state, jobs.c.spec_json, jobs.c.redispatches).where(_JOB_KEY)
_SET_STATE = jobs.update().where(_JOB_KEY, jobs.c.state == sa.bindparam("k_from")).values(
    state=sa.bindparam("k_state"), updated_at=sa.bindparam("k_updated_at"))
_EVENT_BODY = sa.select(events.c.body_json).where(
    events.c.job_id == sa.bindparam("k_job_id"), events.c.device_id == sa.bindparam("k_device_id"),
    events.c.attempt == sa.bindparam("k_attempt"), events.c.seq == sa.bindparam("k_seq"))
_SENT = sa.select(sent_messages.c.kind).where(
    sent_messages.c.msg_id == sa.bindparam("k_msg_id"), sent_messages.c.job_id == sa.bindparam("k_job_id"),
    sent_messages.c.device_id == sa.bindparam("k_device_id"))

DEAD_LETTER_PAYLOAD_MAX = 1 << 20  # bytes of a dead letter's payload kept (Mosquitto's message limit)


class StoreError(ControllerError):
    pass


def default_store_url() -> str:
    from platformdirs import user_data_dir

    path = Path(user_data_dir("edgebench")) / "results.db"
    return f"sqlite:///{path}"




def _text(value: str | None, limit: int | None = None) -> str | None:
    """A device's text for a TEXT column: no NUL (PostgreSQL refuses it), no lone
    surrogate (neither driver encodes it), at most ``limit`` characters."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return value[:limit] if limit else value


class ResultStore(StoreReads):
    def __init__(self, url: str | None = None, create: bool = True):
        """``create=False``: a read-only command's store; a SQLite file that does not exist
        raises StoreMissing instead of becoming a new, empty database."""
        self.url = url or default_store_url()
        self._ignoring_stmts: dict[str, sa.Executable] = {}
        self.redispatches: list[Redispatch] = []  # filled by ingestion, taken by the fleet client
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            if not create and str(path) != ":memory:" and not path.exists():
                raise StoreMissing(f"no results store at {path} (give --store or EDGEBENCH_STORE_URL; "
                                   "dispatch, collect and demo create one)")
            path.parent.mkdir(parents=True, exist_ok=True)
        sqlite = self.url.startswith("sqlite")
        # timeout: the busy handler must be in place before the first statement;
        # switching to WAL takes a lock that another process opening the same
        # fresh store may hold (set after the switch, it came too late: a CI run
        # failed with "database is locked" inside PRAGMA journal_mode=WAL)
        self.engine: Engine = sa.create_engine(self.url, future=True,
                                               connect_args={"timeout": 60} if sqlite else {})
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=60000")
                _switch_to_wal(cur)
                cur.close()
        self.migrate()

    # -- migrations -------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply missing migrations, once, even when several controllers start together."""
        with self.engine.begin() as conn:
            self._lock_for_migration(conn)
            schema_migrations.create(conn, checkfirst=True)
            done = {row[0] for row in conn.execute(sa.select(schema_migrations.c.version))}
            for version in sorted(MIGRATIONS):
                if version in done:
                    continue
                MIGRATIONS[version](conn)
                conn.execute(schema_migrations.insert().values(version=version, applied_at=_now()))
        return max(MIGRATIONS)

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        """Serialise migrate() across processes and hosts, until this transaction ends.

        Without it, two controllers starting on an empty database both see no
        schema_migrations table and both create it; one of them fails.
        """
        if self.engine.dialect.name == "postgresql":
            # PostgreSQL runs DDL inside the transaction, so holding a
            # transaction-scoped advisory lock makes the whole check-and-apply atomic.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        elif self.engine.dialect.name == "sqlite":
            # pysqlite opens transactions lazily (and not for DDL): take the
            # write lock up front so the check and the DDL see one database state.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _begin_write(self, conn: sa.Connection) -> None:
        """A read-then-write transaction must hold the write lock from its first read:
        on SQLite BEGIN IMMEDIATE (else two collectors' upgrades deadlock into "database
        is locked"); on PostgreSQL the job row is locked FOR UPDATE where it is read."""
        if self.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0)

    def _insert(self, table: sa.Table, values: dict[str, Any] | None = None
                ) -> pg_dialect.Insert | sqlite_dialect.Insert:
        """The dialect's INSERT, which knows ON CONFLICT (both spell it the same)."""
        ins = pg_dialect.insert(table) if self.engine.dialect.name == "postgresql" else sqlite_dialect.insert(table)
        return ins if values is None else ins.values(**values)

    def _insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Executable:
        # preserve_rowcount: SQLAlchemy only promises rowcount for UPDATE and
        # DELETE; with psycopg an INSERT reports -1 unless asked, and ingest_event
        # reads rowcount to tell a new event from a duplicate.
        return self._insert(table, values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)

    def _ignoring(self, table: sa.Table) -> sa.Executable:
        """_insert_ignore without values, built once per table: executed with a
        parameter dict it skips SQLAlchemy's per-call statement construction and
        cache-key walk over the values, which was most of ingestion's CPU."""
        stmt = self._ignoring_stmts.get(table.name)
        if stmt is None:
            stmt = self._insert(table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
            self._ignoring_stmts[table.name] = stmt
        return stmt

    # -- writes -----------------------------------------------------------------------
    def record_dispatch(self, device_id: str, job: JobSpec, msg_id: str | None = None) -> None:
        """A job sent (or about to be sent) to a device, with the msg_id of its message."""
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(jobs, {
                "job_id": job.job_id, "device_id": device_id, "sweep_id": job.sweep_id,
                "backend": job.backend.value, "spec_json": job.model_dump_json(),
                "state": JobState.DISPATCHED.value, "dispatched_at": _now(), "updated_at": _now(),
            }))
            if msg_id is not None:
                self._record_sent(conn, msg_id, job.job_id, device_id, "job")

    def record_sent(self, msg_id: str, job_ids: Iterable[str], device_id: str, kind: str) -> None:
        """A cancel or replay request sent to a device about these jobs."""
        with self.engine.begin() as conn:
            for job_id in job_ids:
                self._record_sent(conn, msg_id, job_id, device_id, kind)

    def _record_sent(self, conn: sa.Connection, msg_id: str, job_id: str, device_id: str, kind: str) -> None:
        # one message may be about several jobs (a replay request): key on all three
        conn.execute(self._insert_ignore(sent_messages, {
            "msg_id": msg_id if kind != "replay" else f"{msg_id}/{job_id}", "job_id": job_id,
            "device_id": device_id, "kind": kind, "sent_at": _now()}))

    def ingest_event(self, event: JobEvent) -> bool:
        """Store an event once; False for a duplicate or one kept aside."""
        return self.ingest([Inbound(event)])[0]

    def ingest_events(self, batch: list[JobEvent]) -> list[bool]:
        return self.ingest([Inbound(e) for e in batch])

    def ingest(self, batch: list[Inbound]) -> list[bool]:
        """Store a batch of events in one transaction (one commit, one fsync: what
        limits a collector's rate); per event, True if it was new and taken.

        If anything in the batch fails, the batch is stored again one event at a
        time, each in a savepoint: the event that fails is kept aside with the
        error, the others are stored. Only a store that fails as a whole (down,
        full) raises, and then nothing of the batch is acknowledged."""
        try:
            with self.engine.begin() as conn:
                self._begin_write(conn)
                return [self._ingest(conn, item) for item in batch]
        except Exception as exc:  # noqa: BLE001 - isolate the event at fault, below
            log.warning("a batch of %d event(s) failed to store (%s: %s); storing one by one", len(batch),
                        type(exc).__name__, printable(exc, 300))
        out = []
        with self.engine.begin() as conn:
            self._begin_write(conn)
            for item in batch:
                try:
                    with conn.begin_nested():
                        out.append(self._ingest(conn, item))
                except Exception as exc:  # noqa: BLE001 - this event's fault: keep it aside, go on
                    self._aside(conn, item, f"the store could not take it: {type(exc).__name__}: {exc}")
                    out.append(False)
        return out

    def _ingest(self, conn: sa.Connection, item: Inbound) -> bool:
        ev = item.event
        key = {"k_job_id": ev.job_id, "k_device_id": ev.device_id}
        q = _JOB_ROW.with_for_update() if self.engine.dialect.name == "postgresql" else _JOB_ROW
        row = conn.execute(q, key).first()
        if row is None:
            return self._aside(conn, item, f"unsolicited: job {ev.job_id} was never dispatched to {ev.device_id}"
                               " from this store")
        current = JobState(row[0])
        answers = ev.attempt == 0 and ev.in_reply_to is not None and self._answers_our_message(conn, ev)
        body = ev.model_dump_json(exclude={"result"})
        stored = conn.execute(_EVENT_BODY, {**key, "k_attempt": ev.attempt, "k_seq": ev.seq}).scalar()
        if stored is not None:
            if stored == body:
                return False  # QoS 1 redelivery or a replay: stored once
            return self._aside(conn, item, f"a different event under the stored key (attempt {ev.attempt},"
                               f" seq {ev.seq})")
        decision = decide(current, ev, answers_our_message=answers, redispatches=int(row[2] or 0))
        if decision.action == "aside":
            return self._aside(conn, item, decision.reason)
        spec = JobSpec.model_validate_json(row[1])
        if ev.result is not None and ev.result.job != spec:
            return self._aside(conn, item, "the result describes a different job than the one dispatched")
        conn.execute(self._ignoring(events), {
            "job_id": ev.job_id, "device_id": ev.device_id, "attempt": ev.attempt,
            "seq": ev.seq, "state": ev.state.value, "at": ev.at, "body_json": body,
        })
        if decision.action == "redispatch":
            conn.execute(jobs.update().where(jobs.c.job_id == ev.job_id, jobs.c.device_id == ev.device_id)
                         .values(redispatches=jobs.c.redispatches + 1, updated_at=_now()))
            self.redispatches.append(Redispatch(ev.device_id, spec))
            log.warning("job %s on %s: the agent never received it; dispatching it again", ev.job_id,
                        ev.device_id)
            return True
        if decision.action == "apply":
            # the same state too: updated_at is when the job was last heard of (reconciliation)
            conn.execute(_SET_STATE, {**key, "k_from": current.value, "k_state": ev.state.value,
                                      "k_updated_at": _now()})
            if ev.state in TERMINAL_STATES:
                values = _result_values(ev, spec)
                conn.execute(self._ignoring(results), values)
                if ev.result is not None:  # the compact row comparisons read (controller/facts.py)
                    try:
                        facts = facts_values(ev.result)
                    except Exception as exc:  # noqa: BLE001 - never lose a result over its summary row
                        log.warning("job %s on %s: no comparison facts (%s: %s)", ev.job_id, ev.device_id,
                                    type(exc).__name__, printable(exc, 200))
                    else:
                        conn.execute(self._ignoring(result_facts),
                                     {**{k: values.get(k) for k in FACT_IDENTITY}, **facts})
        return True

    def _answers_our_message(self, conn: sa.Connection, ev: JobEvent) -> bool:
        assert ev.in_reply_to is not None
        base = {"k_job_id": ev.job_id, "k_device_id": ev.device_id}
        for msg_id in (ev.in_reply_to, f"{ev.in_reply_to}/{ev.job_id}"):  # a job or cancel; a replay request
            if conn.execute(_SENT, {**base, "k_msg_id": msg_id}).first() is not None:
                return True
        return False

    def _aside(self, conn: sa.Connection, item: Inbound, reason: str) -> bool:
        ev = item.event
        self._dead_letter(conn, item.topic, item.payload or ev.model_dump_json().encode(), reason,
                          ev.device_id, ev.job_id)
        return False

    def _dead_letter(self, conn: sa.Connection, topic: str | None, payload: bytes | None, reason: str,
                     device_id: str | None = None, job_id: str | None = None) -> None:
        log.warning("kept aside (dead letter) from %s: %s", printable(device_id or topic or "?", 200),
                    printable(reason, 500))
        conn.execute(dead_letters.insert().values(
            received_at=_now(), topic=_text(topic, 512), device_id=_text(device_id, 64), job_id=_text(job_id, 200),
            reason=_text(reason, 4000), payload=payload[:DEAD_LETTER_PAYLOAD_MAX] if payload is not None else None))

    def dead_letter(self, topic: str | None, payload: bytes | None, reason: str, device_id: str | None = None,
                    job_id: str | None = None) -> None:
        """Keep aside a message that could not even be parsed, or was on the wrong topic."""
        with self.engine.begin() as conn:
            self._dead_letter(conn, topic, payload, reason, device_id, job_id)

    def take_redispatches(self) -> list[Redispatch]:
        out, self.redispatches = self.redispatches, []
        return out

    def upsert_device(self, status: AgentStatus) -> None:
        values = {"fleet": status.fleet, "online": status.online, "last_seen": status.at,
                  "status_json": status.model_dump_json()}
        # One statement, so two collectors seeing a new device at once cannot
        # fail on each other's insert. No recency guard on last_seen: the
        # agent's last will carries the time it was set (its start), and it
        # must still mark the device offline.
        upsert = self._insert(devices, {"device_id": status.device_id, **values}).on_conflict_do_update(
            index_elements=[devices.c.device_id], set_=values)
        with self.engine.begin() as conn:
            conn.execute(upsert)

    # -- writes beside the reads ------------------------------------------------------
    def backfill_facts(self) -> int:
        """Compute result_facts for stored results that have none (rows copied in from another store,
        e.g. by scripts/make_report_fixture.py --merge); returns how many were added."""
        r, f = results, result_facts
        missing = (sa.select(*(r.c[k] for k in FACT_IDENTITY), r.c.result_json)
                   .select_from(r.outerjoin(f, sa.and_(r.c.job_id == f.c.job_id, r.c.device_id == f.c.device_id,
                                                       r.c.attempt == f.c.attempt)))
                   .where(f.c.job_id.is_(None), r.c.result_json.is_not(None)))
        added = 0
        with self.engine.begin() as conn:
            for row in conn.execute(missing).all():
                values = _facts_of(row[-1])
                if values is not None:
                    conn.execute(self._ignoring(result_facts), {**dict(zip(FACT_IDENTITY, row[:-1])), **values})
                    added += 1
        return added

    def purge_dead_letters(self, before: datetime | None = None) -> int:
        with self.engine.begin() as conn:
            stmt = dead_letters.delete()
            if before is not None:
                stmt = stmt.where(dead_letters.c.received_at < before)
            return int(conn.execute(stmt).rowcount or 0)

    def mark_reconciled(self, keys: Iterable[tuple[str, str]], at: datetime | None = None) -> None:
        at = at or _now()
        with self.engine.begin() as conn:
            for job_id, device_id in keys:
                conn.execute(jobs.update().where(jobs.c.job_id == job_id, jobs.c.device_id == device_id)
                             .values(reconciled_at=at))

    def close(self) -> None:
        self.engine.dispose()


def _result_values(event: JobEvent, spec: JobSpec | None) -> dict[str, Any]:
    res = event.result
    outcome = {
        JobState.SUCCEEDED: "OK",
        JobState.FAILED: "OOM" if (event.error_type and event.error_type.value == "OOM") else "FAILED",
        JobState.TIMED_OUT: "TIMED_OUT",
        JobState.CANCELED: "CANCELED",
        JobState.REJECTED: "REJECTED",
    }[event.state]
    values: dict[str, Any] = {
        "job_id": event.job_id, "device_id": event.device_id, "attempt": event.attempt,
        "sweep_id": event.sweep_id, "state": event.state.value, "outcome": outcome,
        "error_type": event.error_type.value if event.error_type else None,
        "reason": _text(event.reason), "finished_at": event.at,
        "result_json": res.model_dump_json() if res else None,
    }
    # one description of what ran: the job a result embeds, else the dispatched spec
    job = res.job if res is not None else spec
    if job is not None:
        values.update(
            backend=job.backend.value, mode=job.mode.value, model=job.workload.model,
            dataset=job.workload.dataset, batch_size=job.workload.batch_size,
            precision=job.precision.value, gpus=job.gpus,
            data_format=job.data_format.value if job.data_format else None, compiled=job.compile,
            input_placement=job.input.value if job.input else None,
        )
    if res is not None:
        values.update(img_per_s=res.summary.window_img_per_s, img_per_s_std=res.summary.std_img_per_s)
    return values


WAL_SWITCH_TIMEOUT_S = 60.0


def _switch_to_wal(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock it needs.

    The busy timeout does not cover every case: two connections switching a fresh file at once can each
    hold a shared lock and want the exclusive one, and SQLite then answers one of them "database is
    locked" at once instead of waiting (its deadlock rule). A clean CI run hit it in round 13 of the
    8-process test (tests/controller/test_store_concurrency.py).
    """
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT_S
    delay_s = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.25)
