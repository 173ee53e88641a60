"""The results store's reads: results, facts, jobs, events, dead letters and devices, for reports and
reconciliation (ResultStore in controller/store.py inherits them)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edgebench.common.text import printable
from edgebench.controller.bulk import gc_paused
from edgebench.controller.store_rows import DeadLetter, FactRow, OpenJob, ResultRow, _aware
from edgebench.controller.store_schema import (
    dead_letters,
    devices,
    events,
    jobs,
    metadata,
    result_facts,
    results,
)
from edgebench.schemas import TERMINAL_STATES, AgentStatus, JobEvent, JobSpec, JobState

log = logging.getLogger("edgebench.controller.store")


class StoreReads:
    """Read-only queries over the store's tables; the subclass opens ``engine``."""

    engine: Engine

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

    def open_jobs(self) -> list[OpenJob]:
        """Every dispatched job that has not ended."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.job_id, jobs.c.device_id, jobs.c.state, jobs.c.spec_json,
                                          jobs.c.updated_at, jobs.c.reconciled_at)
                                .where(jobs.c.state.not_in([s.value for s in TERMINAL_STATES]))).all()
        return [OpenJob(r[0], r[1], JobState(r[2]), JobSpec.model_validate_json(r[3]), _aware(r[4]), _aware(r[5]))
                for r in rows]

    def devices(self) -> list[AgentStatus]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(devices.c.status_json).order_by(devices.c.device_id)).all()
        return [AgentStatus.model_validate_json(r[0]) for r in rows]

    def count(self, table: str) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)


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
