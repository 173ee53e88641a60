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

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from edgebench.common.text import printable
from edgebench.controller.bulk import gc_paused
from edgebench.controller.errors import ControllerError, StoreMissing
from edgebench.controller.facts import facts_values
from edgebench.controller.ingest import Inbound, decide
from edgebench.controller.model_registry import v5_models
from edgebench.schemas import TERMINAL_STATES, AgentStatus, JobEvent, JobSpec, JobState, Result

log = logging.getLogger(__name__)

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("sweep_id", sa.String(64), index=True),
    sa.Column("backend", sa.String(32)),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("dispatched_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    # reconciliation (controller/reconcile.py): when its agent was last asked to
    # replay the job, and how often it was dispatched again after a Lost answer
    sa.Column("reconciled_at", sa.DateTime(timezone=True)),
    sa.Column("redispatches", sa.Integer, nullable=False, server_default="0"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("body_json", sa.Text, nullable=False),
)

results = sa.Table(
    "results", metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("sweep_id", sa.String(64), index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # OK, OOM, FAILED, TIMED_OUT, CANCELED, REJECTED
    sa.Column("backend", sa.String(32)),
    sa.Column("mode", sa.String(8)),
    sa.Column("model", sa.String(32)),
    sa.Column("dataset", sa.String(32)),
    sa.Column("batch_size", sa.Integer),
    sa.Column("precision", sa.String(8)),
    sa.Column("gpus", sa.Integer),
    # knobs the job set explicitly beyond precision: part of a report cell's identity
    sa.Column("data_format", sa.String(16)),
    sa.Column("compiled", sa.Boolean),
    sa.Column("img_per_s", sa.Float),
    sa.Column("img_per_s_std", sa.Float),
    sa.Column("error_type", sa.String(32)),
    sa.Column("reason", sa.Text),
    sa.Column("finished_at", sa.DateTime(timezone=True), index=True),
    sa.Column("result_json", sa.Text),
)

# One narrow row per result with what comparisons over many results read
# (controller/facts.py): apart from results, because in SQLite a column
# added after result_json sits behind that 5-250 KB value, and reading it
# walks the value's overflow pages.
# The cell's identity is copied in (from the same values as the results row),
# so that a comparison reads this table alone: a scan of results reads about
# one page per row (its 5-250 KB JSON), 400 MB for 100,000 results.
result_facts = sa.Table(
    "result_facts", metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("sweep_id", sa.String(64), index=True),
    sa.Column("outcome", sa.String(16)),
    sa.Column("backend", sa.String(32)),
    sa.Column("mode", sa.String(8)),
    sa.Column("model", sa.String(32)),
    sa.Column("dataset", sa.String(32)),
    sa.Column("batch_size", sa.Integer),
    sa.Column("precision", sa.String(8)),
    sa.Column("gpus", sa.Integer),
    sa.Column("img_per_s", sa.Float),
    sa.Column("finished_at", sa.DateTime(timezone=True), index=True),
    sa.Column("data_format", sa.String(16)),
    sa.Column("compiled", sa.Boolean),
    # the device group: hardware, driver, image digest, power mode
    sa.Column("hardware", sa.String(128)),
    sa.Column("driver", sa.String(64)),
    sa.Column("image_digest", sa.String(128)),
    sa.Column("power_mode", sa.String(64)),
    sa.Column("verdict", sa.String(8)),  # valid, suspect, NULL: no validity record
    sa.Column("stats_json", sa.Text),  # repeats' and blocks' img/s, suspect reasons, images, energy
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("fleet", sa.String(64)),
    sa.Column("online", sa.Boolean),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("status_json", sa.Text),
)

# Every message this store sent to a device about a job: answers (attempt 0
# events) count only when they reply to one of these.
sent_messages = sa.Table(
    "sent_messages", metadata,
    sa.Column("msg_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(200), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # job, cancel, replay
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Index("sent_messages_job", "job_id", "device_id"),
)

# What devices sent that was kept out of jobs/events/results, with the reason.
dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), index=True),
    sa.Column("topic", sa.String(512)),
    sa.Column("device_id", sa.String(64)),
    sa.Column("job_id", sa.String(200)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary),
)

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True)),
)

def _as_of_v1(table: sa.Table, later: tuple[str, ...]) -> sa.Table:
    """``table`` without the columns later migrations add."""
    return sa.Table(table.name, sa.MetaData(),
                    *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index)
                      for c in table.columns if c.name not in later))


def _v1_tables(conn: sa.Connection) -> None:
    # the tables as version 1 made them, so that later migrations apply to old and new stores alike
    metadata.create_all(conn, tables=[events, devices])
    _as_of_v1(jobs, ("reconciled_at", "redispatches")).create(conn, checkfirst=True)
    _as_of_v1(results, ("data_format", "compiled")).create(conn, checkfirst=True)


def _v3_integrity(conn: sa.Connection) -> None:
    """Dead letters, the messages sent, and the reconciliation columns (issue: hostile input and faults)."""
    metadata.create_all(conn, tables=[sent_messages, dead_letters])
    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    conn.execute(sa.text(f"ALTER TABLE jobs ADD COLUMN reconciled_at {timestamp}"))
    conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN redispatches INTEGER NOT NULL DEFAULT 0"))


def _v2_variant_columns(conn: sa.Connection) -> None:
    """results.data_format / compiled, backfilled from each row's job spec, so that
    reports read a cell's identity from columns instead of re-parsing every result."""
    conn.execute(sa.text("ALTER TABLE results ADD COLUMN data_format VARCHAR(16)"))
    conn.execute(sa.text("ALTER TABLE results ADD COLUMN compiled BOOLEAN"))
    specs = {(r[0], r[1]): r[2] for r in conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.spec_json))}
    rows = conn.execute(sa.select(results.c.job_id, results.c.device_id, results.c.attempt,
                                  results.c.result_json)).all()
    for job_id, device_id, attempt, result_json in rows:
        spec = _spec_of(result_json, specs.get((job_id, device_id)))
        if spec is None:
            continue
        conn.execute(results.update().where(results.c.job_id == job_id, results.c.device_id == device_id,
                                            results.c.attempt == attempt)
                     .values(data_format=spec.get("data_format"), compiled=spec.get("compile")))


def _spec_of(result_json: str | None, spec_json: str | None) -> dict[str, Any] | None:
    import json

    for text, key in ((result_json, "job"), (spec_json, None)):
        if not text:
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        doc = doc.get(key) if key else doc
        if isinstance(doc, dict):
            return doc
    return None


FACT_IDENTITY = ("job_id", "device_id", "attempt", "sweep_id", "outcome", "backend", "mode", "model", "dataset",
                 "batch_size", "precision", "gpus", "img_per_s", "finished_at")


def _v4_result_facts(conn: sa.Connection) -> None:
    """result_facts, backfilled from every stored result (parsed once, here)."""
    result_facts.create(conn, checkfirst=True)
    rows = conn.execute(sa.select(*(results.c[k] for k in FACT_IDENTITY), results.c.result_json)
                        .where(results.c.result_json.is_not(None))).all()
    batch: list[dict[str, Any]] = []
    for row in rows:
        values = _facts_of(row[-1])
        if values is not None:
            batch.append({**dict(zip(FACT_IDENTITY, row[:-1])), **values})
        if len(batch) >= 500:
            conn.execute(result_facts.insert(), batch)
            batch = []
    if batch:
        conn.execute(result_facts.insert(), batch)


def _facts_of(result_json: str) -> dict[str, Any] | None:
    from pydantic import ValidationError

    try:
        return facts_values(Result.from_stored_json(result_json))
    except (ValidationError, ValueError):
        return None  # a row no reader can parse either; comparisons skip it


# version -> callable(connection). Version 1 creates the tables; later versions
# alter them. Never edit an applied migration: add a new one.
MIGRATIONS: dict[int, Any] = {
    1: _v1_tables,
    2: _v2_variant_columns,
    3: _v3_integrity,
    4: _v4_result_facts,
    5: v5_models,  # the model registry (controller/model_registry.py, issue 19)
}


# pg_advisory_xact_lock key held while migrating (any constant unique to edgebench;
# crc32 of "edgebench.controller.store.migrate").
MIGRATION_LOCK_KEY = 0xE27D47C5


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


@dataclass(frozen=True)
class ResultRow:
    """One stored result (or failure). The descriptive columns are None only in rows
    written before unsolicited events were kept apart (a reader must survive them)."""

    job_id: str
    device_id: str
    attempt: int
    sweep_id: str | None
    state: str
    outcome: str
    backend: str | None
    mode: str | None
    model: str | None
    dataset: str | None
    batch_size: int | None
    precision: str | None
    gpus: int | None
    data_format: str | None
    compiled: bool | None
    img_per_s: float | None
    img_per_s_std: float | None
    error_type: str | None
    reason: str | None
    finished_at: datetime | None
    result_json: str | None

    def result(self) -> Result | None:
        return Result.from_stored_json(self.result_json) if self.result_json else None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_at: datetime | None
    topic: str | None
    device_id: str | None
    job_id: str | None
    reason: str
    payload: bytes | None


@dataclass(frozen=True)
class OpenJob:
    """A dispatched job that has not ended (reconciliation's candidates)."""

    job_id: str
    device_id: str
    state: JobState
    spec: JobSpec
    updated_at: datetime | None
    reconciled_at: datetime | None


@dataclass(frozen=True)
class Redispatch:
    """A job to send again: its agent answered that it never received it."""

    device_id: str
    job: JobSpec


class FactRow(NamedTuple):
    """One result as comparisons read it: the cell's identity, the figure, the device group, the samples.

    A named tuple, not a dataclass, and ``stats`` parsed on demand: comparisons build 100,000 of
    them, and a history needs the figure alone."""

    job_id: str
    device_id: str
    attempt: int
    sweep_id: str | None
    outcome: str
    backend: str | None
    mode: str | None
    model: str | None
    dataset: str | None
    batch_size: int | None
    precision: str | None
    gpus: int | None
    img_per_s: float | None
    finished_at: datetime | None
    data_format: str | None
    compiled: bool | None
    hardware: str | None
    driver: str | None
    image_digest: str | None
    power_mode: str | None
    verdict: str | None
    stats_json: str | None

    @property
    def stats(self) -> dict[str, Any]:
        """The repeats' and blocks' img/s, suspect reasons, images, energy (controller/facts.py)."""
        if not self.stats_json:
            return {}
        try:
            doc = json.loads(self.stats_json)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}


def default_store_url() -> str:
    from platformdirs import user_data_dir

    path = Path(user_data_dir("edgebench")) / "results.db"
    return f"sqlite:///{path}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime | None) -> datetime | None:
    """SQLite returns stored UTC times without their zone."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _text(value: str | None, limit: int | None = None) -> str | None:
    """A device's text for a TEXT column: no NUL (PostgreSQL refuses it), no lone
    surrogate (neither driver encodes it), at most ``limit`` characters."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return value[:limit] if limit else value


class ResultStore:
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
                cur.execute("PRAGMA journal_mode=WAL")
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

    # -- reads ------------------------------------------------------------------------
    def job_states(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        keys = list(keys)
        if not keys:
            return {}
        ids = {k[0] for k in keys}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.state)
                                .where(jobs.c.job_id.in_(ids))).all()
        wanted = set(keys)
        return {(r[0], r[1]): r[2] for r in rows if (r[0], r[1]) in wanted}

    def results(
        self,
        sweep_id: str | None = None,
        device_id: str | None = None,
        backend: str | None = None,
        model: str | None = None,
        dataset: str | None = None,
        job_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[ResultRow]:
        q = sa.select(results)
        for col, value in ((results.c.sweep_id, sweep_id), (results.c.device_id, device_id),
                           (results.c.backend, backend), (results.c.model, model),
                           (results.c.dataset, dataset), (results.c.job_id, job_id)):
            if value is not None:
                q = q.where(col == value)
        if since is not None:
            q = q.where(results.c.finished_at >= since)
        if until is not None:
            q = q.where(results.c.finished_at <= until)
        q = q.order_by(results.c.finished_at.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [ResultRow(**row._mapping) for row in conn.execute(q)]

    def select_results(
        self,
        *,
        sweep_ids: Iterable[str] = (),
        device_ids: Iterable[str] = (),
        backends: Iterable[str] = (),
        models: Iterable[str] = (),
        workloads: Iterable[tuple[str, str]] = (),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[ResultRow]:
        """Stored results matching every filter given (each a set: any of its values), newest first."""
        q = _where(sa.select(results), results, sweep_ids, device_ids, backends, models, workloads, since, until)
        with self.engine.connect() as conn:
            return [ResultRow(**row._mapping) for row in conn.execute(q.order_by(results.c.finished_at.desc()))]

    def select_facts(
        self,
        *,
        sweep_ids: Iterable[str] = (),
        device_ids: Iterable[str] = (),
        backends: Iterable[str] = (),
        models: Iterable[str] = (),
        workloads: Iterable[tuple[str, str]] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        ok_only: bool = True,
    ) -> list[FactRow]:
        """The compact rows of comparisons (the result_facts table alone), oldest first.

        Never reads results or their JSON. Results without facts (unparseable) are left out.
        """
        f = result_facts
        sqlite = self.engine.dialect.name == "sqlite"
        # SQLite keeps times as text, which SQLAlchemy parses with a regular expression (a second per
        # 100,000 rows); datetime.fromisoformat reads the same text ten times faster
        cols = [sa.cast(f.c[k], sa.String).label(k) if sqlite and k == "finished_at" else f.c[k]
                for k in FactRow._fields]
        q = _where(sa.select(*cols), f, sweep_ids, device_ids, backends, models, workloads, since, until)
        if ok_only:
            q = q.where(f.c.outcome == "OK")
        at = FactRow._fields.index("finished_at")
        parse = datetime.fromisoformat
        with self.engine.connect() as conn, gc_paused():
            rows = conn.execute(q.order_by(f.c.finished_at, f.c.job_id)).all()
            if not sqlite:
                return [FactRow(*row) for row in rows]
            return [FactRow(*row[:at], parse(row[at]) if row[at] else None, *row[at + 1:])  # type: ignore[call-arg]
                    for row in rows]

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

    def job_tags(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        """Tags of each (job, device) from its dispatched spec (a failed job has no Result to carry them)."""
        wanted = set(keys)
        if not wanted:
            return {}
        out: dict[tuple[str, str], set[str]] = {}
        ids = sorted({k[0] for k in wanted})
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):  # bound the IN list (SQLite's variable limit)
                found = conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.spec_json)
                                     .where(jobs.c.job_id.in_(ids[start:start + 500]))).all()
                for j, d, spec in found:
                    if (j, d) in wanted:
                        out[(j, d)] = _spec_tags(spec)
        return out

    def job_devices(self, job_id: str) -> list[str]:
        """The devices a job was dispatched to."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(jobs.c.device_id).where(jobs.c.job_id == job_id)
                                               .order_by(jobs.c.device_id))]

    def events_for(self, job_id: str) -> list[JobEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.body_json).where(events.c.job_id == job_id)
                                .order_by(events.c.device_id, events.c.attempt, events.c.seq)).all()
        out = []
        for (body,) in rows:
            try:
                out.append(JobEvent.model_validate_json(body))
            except ValueError:  # stored by an older version under looser rules: skip, never crash a reader
                log.warning("skipping a stored event of job %s that no longer parses", printable(job_id, 200))
        return out

    def dead_letters(self, limit: int | None = 100, since: datetime | None = None) -> list[DeadLetter]:
        q = sa.select(dead_letters).order_by(dead_letters.c.id.desc())
        if since is not None:
            q = q.where(dead_letters.c.received_at >= since)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [DeadLetter(r.id, _aware(r.received_at), r.topic, r.device_id, r.job_id, r.reason,
                               bytes(r.payload) if r.payload is not None else None) for r in conn.execute(q)]

    def purge_dead_letters(self, before: datetime | None = None) -> int:
        with self.engine.begin() as conn:
            stmt = dead_letters.delete()
            if before is not None:
                stmt = stmt.where(dead_letters.c.received_at < before)
            return int(conn.execute(stmt).rowcount or 0)

    def open_jobs(self) -> list[OpenJob]:
        """Every dispatched job that has not ended."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.state, jobs.c.spec_json,
                                          jobs.c.updated_at, jobs.c.reconciled_at)
                                .where(jobs.c.state.not_in([s.value for s in TERMINAL_STATES]))).all()
        return [OpenJob(r[0], r[1], JobState(r[2]), JobSpec.model_validate_json(r[3]), _aware(r[4]), _aware(r[5]))
                for r in rows]

    def mark_reconciled(self, keys: Iterable[tuple[str, str]], at: datetime | None = None) -> None:
        at = at or _now()
        with self.engine.begin() as conn:
            for job_id, device_id in keys:
                conn.execute(jobs.update().where(jobs.c.job_id == job_id, jobs.c.device_id == device_id)
                             .values(reconciled_at=at))

    def devices(self) -> list[AgentStatus]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(devices.c.status_json).order_by(devices.c.device_id)).all()
        return [AgentStatus.model_validate_json(r[0]) for r in rows]

    def count(self, table: str) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)

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
        )
    if res is not None:
        values.update(img_per_s=res.summary.window_img_per_s, img_per_s_std=res.summary.std_img_per_s)
    return values


def _spec_tags(spec_json: str | None) -> set[str]:
    from pydantic import ValidationError

    if not spec_json:
        return set()
    try:
        return set(JobSpec.model_validate_json(spec_json).tags)
    except ValidationError:
        return set()


def _where(q: Any, t: sa.Table, sweep_ids: Iterable[str], device_ids: Iterable[str], backends: Iterable[str],
           models: Iterable[str], workloads: Iterable[tuple[str, str]], since: datetime | None,
           until: datetime | None) -> Any:
    for col, values in ((t.c.sweep_id, sweep_ids), (t.c.device_id, device_ids), (t.c.backend, backends),
                        (t.c.model, models)):
        values = sorted(set(values))
        if values:
            q = q.where(col.in_(values))
    pairs = sorted(set(workloads))
    if pairs:
        q = q.where(sa.or_(*(sa.and_(t.c.model == m, t.c.dataset == d) for m, d in pairs)))
    if since is not None:
        q = q.where(t.c.finished_at >= since)
    if until is not None:
        q = q.where(t.c.finished_at <= until)
    return q
