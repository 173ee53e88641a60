"""The controller's results store: SQLite by default, PostgreSQL for teams.

Ingestion is idempotent: events are keyed by (job, device, attempt, seq) and
results by (job, device, attempt), so whatever the broker redelivers, each is
stored once. Migrations are numbered and recorded in schema_migrations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from edgebench.schemas import TERMINAL_STATES, AgentStatus, JobEvent, JobSpec, JobState, Result

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

devices = sa.Table(
    "devices", metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("fleet", sa.String(64)),
    sa.Column("online", sa.Boolean),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("status_json", sa.Text),
)

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True)),
)

def _v1_tables(conn: sa.Connection) -> None:
    # version 1's results table had no data_format / compiled columns: create it
    # as it was, so that migration 2 applies to old and new stores alike
    results_v1 = sa.Table("results", sa.MetaData(),
                          *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                                      index=c.index)
                            for c in results.columns if c.name not in ("data_format", "compiled")))
    metadata.create_all(conn, tables=[jobs, events, devices])
    results_v1.create(conn, checkfirst=True)


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


# version -> callable(connection). Version 1 creates the tables; later versions
# alter them. Never edit an applied migration: add a new one.
MIGRATIONS: dict[int, Any] = {
    1: _v1_tables,
    2: _v2_variant_columns,
}


# pg_advisory_xact_lock key held while migrating (any constant unique to edgebench;
# crc32 of "edgebench.controller.store.migrate").
MIGRATION_LOCK_KEY = 0xE27D47C5


# Ingestion's statements, built once with bind parameters (see ResultStore._ignoring).
_JOB_KEY = sa.and_(jobs.c.job_id == sa.bindparam("k_job_id"), jobs.c.device_id == sa.bindparam("k_device_id"))
_SET_STATE = jobs.update().where(_JOB_KEY).values(state=sa.bindparam("k_state"),
                                                  updated_at=sa.bindparam("k_updated_at"))
_SET_STATE_UNLESS_TERMINAL = _SET_STATE.where(jobs.c.state.not_in([s.value for s in TERMINAL_STATES]))
_SPEC_OF = sa.select(jobs.c.spec_json).where(_JOB_KEY)


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class ResultRow:
    job_id: str
    device_id: str
    attempt: int
    sweep_id: str | None
    state: str
    outcome: str
    backend: str
    mode: str
    model: str
    dataset: str
    batch_size: int
    precision: str
    gpus: int
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


def default_store_url() -> str:
    from platformdirs import user_data_dir

    path = Path(user_data_dir("edgebench")) / "results.db"
    return f"sqlite:///{path}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ResultStore:
    def __init__(self, url: str | None = None):
        self.url = url or default_store_url()
        self._ignoring_stmts: dict[str, sa.Executable] = {}
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=10000")
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
    def record_dispatch(self, device_id: str, job: JobSpec) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(jobs, {
                "job_id": job.job_id, "device_id": device_id, "sweep_id": job.sweep_id,
                "backend": job.backend.value, "spec_json": job.model_dump_json(),
                "state": JobState.DISPATCHED.value, "dispatched_at": _now(), "updated_at": _now(),
            }))

    def ingest_event(self, event: JobEvent) -> bool:
        """Store an event once; returns False for a duplicate."""
        return self.ingest_events([event])[0]

    def ingest_events(self, batch: list[JobEvent]) -> list[bool]:
        """Store a batch of events in one transaction (one commit, one fsync:
        what limits a collector's rate); per event, False for a duplicate."""
        with self.engine.begin() as conn:
            return [self._ingest(conn, event) for event in batch]

    def _ingest(self, conn: sa.Connection, event: JobEvent) -> bool:
        inserted = conn.execute(self._ignoring(events), {
            "job_id": event.job_id, "device_id": event.device_id, "attempt": event.attempt,
            "seq": event.seq, "state": event.state.value, "at": event.at,
            "body_json": event.model_dump_json(exclude={"result"}),
        }).rowcount
        if not inserted:
            return False
        terminal = event.state in TERMINAL_STATES
        key = {"k_job_id": event.job_id, "k_device_id": event.device_id}
        # Never move a finished job back to a running state (events can arrive out of order).
        conn.execute(_SET_STATE if terminal else _SET_STATE_UNLESS_TERMINAL,
                     {**key, "k_state": event.state.value, "k_updated_at": _now()})
        if terminal:
            spec_json = conn.execute(_SPEC_OF, key).scalar()
            spec = JobSpec.model_validate_json(spec_json) if spec_json else None
            conn.execute(self._ignoring(results), _result_values(event, spec))
        return True

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

    def events_for(self, job_id: str) -> list[JobEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.body_json).where(events.c.job_id == job_id)
                                .order_by(events.c.device_id, events.c.attempt, events.c.seq)).all()
        return [JobEvent.model_validate_json(r[0]) for r in rows]

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
        "reason": event.reason, "finished_at": event.at,
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
