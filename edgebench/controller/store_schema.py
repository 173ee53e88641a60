"""The results store's tables and numbered migrations (controller/store.py opens and writes the store).

Version 1 creates the tables; later versions alter them. Never edit an applied migration: add a new one.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from edgebench.controller.facts import facts_values
from edgebench.controller.model_registry import v5_models
from edgebench.schemas import Result

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
    sa.Column("input_placement", sa.String(8)),  # the job's explicit input knob (host, device), v6
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
    sa.Column("input_placement", sa.String(8)),  # v6, as results.input_placement
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
    _as_of_v1(results, ("data_format", "compiled", "input_placement")).create(conn, checkfirst=True)


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
    _as_of_v1(result_facts, V6_COLUMNS).create(conn, checkfirst=True)
    rows = conn.execute(sa.select(*(results.c[k] for k in FACT_IDENTITY), results.c.result_json)
                        .where(results.c.result_json.is_not(None))).all()
    batch: list[dict[str, Any]] = []
    for row in rows:
        values = _facts_of(row[-1])
        if values is not None:
            for later in V6_COLUMNS:
                values.pop(later, None)
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


V6_COLUMNS = ("input_placement",)


def _v6_input_placement(conn: sa.Connection) -> None:
    """results / result_facts.input_placement (the job's ``input: host | device``), backfilled from each
    result's job: two results that differ only in where the input lives are two report cells, not one."""
    for name in ("results", "result_facts"):
        conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN input_placement VARCHAR(8)"))
    specs = {(r[0], r[1]): r[2] for r in conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.spec_json))}
    rows = conn.execute(sa.select(results.c.job_id, results.c.device_id, results.c.attempt,
                                  results.c.result_json)).all()
    for job_id, device_id, attempt, result_json in rows:
        spec = _spec_of(result_json, specs.get((job_id, device_id)))
        placement = spec.get("input") if spec else None
        if placement not in ("host", "device"):
            continue
        for table in (results, result_facts):
            conn.execute(table.update().where(table.c.job_id == job_id, table.c.device_id == device_id,
                                              table.c.attempt == attempt).values(input_placement=placement))


# version -> callable(connection). Version 1 creates the tables; later versions
# alter them. Never edit an applied migration: add a new one.
MIGRATIONS: dict[int, Any] = {
    1: _v1_tables,
    2: _v2_variant_columns,
    3: _v3_integrity,
    4: _v4_result_facts,
    5: v5_models,  # the model registry (controller/model_registry.py, issue 19)
    6: _v6_input_placement,
}


# pg_advisory_xact_lock key held while migrating (any constant unique to edgebench;
# crc32 of "edgebench.controller.store.migrate").
MIGRATION_LOCK_KEY = 0xE27D47C5
