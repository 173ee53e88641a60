"""The agent's small durable store: accepted jobs, the outbox, retained events (SQLite, WAL).

A result measured for hours must survive broker outages, agent restarts and
power cuts:

- a job's state change and the event that announces it commit in ONE
  transaction (:meth:`AgentStore.transition`): there is no instant at which the
  agent has moved a job on but has no event to publish for it;
- every event is written to the outbox before it is published, and deleted
  only when the broker acknowledged it (PUBACK);
- a copy of every state-change event (not the per-second progress) is retained
  for ``retention_s``, so that a controller that lost events (a broker that
  crashed within its autosave interval) can ask for them again (reconciliation,
  docs/JOBS.md);
- a job's state changes commit with ``synchronous=FULL`` (fsync: they survive a
  power cut; about 5 ms each here, three per job); progress events, answers to
  junk and outbox bookkeeping commit with NORMAL (no fsync; on power loss the
  last of them may be lost, which costs nothing: a later FULL commit makes every
  earlier frame of the WAL durable too, and junk is answered again on redelivery).
  Answering 10,000 junk messages at fsync speed would take a minute.

Job ids stored here are identifiers (schemas.base.Identifier): answers to
messages that carried none use a counter of their own, never the sender's text.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from edgebench.schemas import JobSpec, JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    msg_id TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, received_at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retained (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE INDEX IF NOT EXISTS retained_age ON retained(created_at);
CREATE TABLE IF NOT EXISTS tombstones (
    job_id TEXT PRIMARY KEY,
    forgotten_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Stores made before the msg_id column: add it (idempotent).
_MIGRATIONS = ("ALTER TABLE jobs ADD COLUMN msg_id TEXT",)

# A job's first execution. Only a new attempt of the same job id would count on from
# here (none is made today: an interrupted job is reported, not re-run); attempt 0 is
# an answer to a message, never an execution (schemas.events.JobEvent).
FIRST_ATTEMPT = 1

# Builds an event's payload once its sequence number is known (inside the transaction).
PayloadBuilder = Callable[[int], bytes]


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    attempt: int
    spec_json: str
    state: JobState
    msg_id: str | None = None

    @cached_property
    def spec(self) -> JobSpec:
        """The accepted spec (validated when it arrived; parsed here once)."""
        return JobSpec.model_validate_json(self.spec_json)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class AgentStore:
    """Thread-safe wrapper; one connection guarded by a lock (writes are tiny)."""

    def __init__(self, path: Path, on_enqueue: Callable[[], None] | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # called after every commit that queued outbox rows (wakes the publisher)
        self.on_enqueue = on_enqueue
        self._enqueued = False
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._durable = False
        self._db.executescript(SCHEMA)
        for stmt in _MIGRATIONS:
            try:
                self._db.execute(stmt)
            except sqlite3.OperationalError:
                pass  # already there

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions -------------------------------------------------------------
    def _tx(self, durable: bool = False) -> _Transaction:
        return _Transaction(self, durable)

    def _set_durable(self, durable: bool) -> None:
        """synchronous=FULL for the next commits, or NORMAL (caller holds the lock)."""
        if durable != self._durable:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def _enqueue(self, db: sqlite3.Connection, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self._enqueued = True
        cur = db.execute("INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
                         (topic, payload, qos, int(retain), time.time()))
        return int(cur.lastrowid or 0)

    @staticmethod
    def _take_seq(db: sqlite3.Connection, job_id: str, attempt: int) -> int:
        row = db.execute("UPDATE jobs SET next_seq = next_seq + 1 WHERE job_id=? AND attempt=? RETURNING next_seq - 1",
                         (job_id, attempt)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id} attempt {attempt}")
        return int(row[0])

    # -- jobs -------------------------------------------------------------------------
    def accept(self, spec: JobSpec, msg_id: str | None, topic: str, build: PayloadBuilder,
               attempt: int = FIRST_ATTEMPT) -> bool:
        """Store a new job as QUEUED together with its QUEUED event; False if the job
        id is already known (a duplicate delivery or a replayed copy)."""
        now = time.time()
        with self._tx(durable=True) as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs(job_id, attempt, spec_json, state, received_at, updated_at, msg_id)"
                " VALUES (?,?,?,?,?,?,?)",
                (spec.job_id, attempt, spec.model_dump_json(), JobState.QUEUED.value, now, now, msg_id))
            if cur.rowcount != 1:
                return False
            self._event(db, spec.job_id, attempt, topic, build, retain=True)
        return True

    def _event(self, db: sqlite3.Connection, job_id: str, attempt: int, topic: str, build: PayloadBuilder,
               retain: bool) -> int:
        seq = self._take_seq(db, job_id, attempt)
        payload = build(seq)
        self._enqueue(db, topic, payload)
        if retain:
            db.execute("INSERT OR REPLACE INTO retained(job_id, attempt, seq, topic, payload, created_at)"
                       " VALUES (?,?,?,?,?,?)", (job_id, attempt, seq, topic, payload, time.time()))
        return seq

    def transition(self, job_id: str, attempt: int, to_state: JobState, topic: str, build: PayloadBuilder,
                   from_states: Iterable[JobState] | None = None) -> bool:
        """Move a job to ``to_state`` and queue (and retain) the event announcing it, in
        one transaction. With ``from_states``, only from one of those (a compare-and-set:
        a cancel and a worker cannot both win a queued job); False if it was not there."""
        with self._tx(durable=True) as db:
            if from_states is not None:
                states = [s.value for s in from_states]
                marks = ",".join("?" for _ in states)
                cur = db.execute(f"UPDATE jobs SET state=?, updated_at=? WHERE job_id=? AND attempt=?"
                                 f" AND state IN ({marks})", (to_state.value, time.time(), job_id, attempt, *states))
            else:
                cur = db.execute("UPDATE jobs SET state=?, updated_at=? WHERE job_id=? AND attempt=?",
                                 (to_state.value, time.time(), job_id, attempt))
            if cur.rowcount != 1:
                return False
            self._event(db, job_id, attempt, topic, build, retain=True)
        return True

    def emit(self, job_id: str, attempt: int, topic: str, build: PayloadBuilder, retain: bool = False) -> None:
        """Queue an event of a job that does not change its state (progress)."""
        with self._tx() as db:
            self._event(db, job_id, attempt, topic, build, retain)

    def answer(self, topic: str, build: PayloadBuilder, job_id: str | None = None) -> int:
        """Queue an answer to a message that is not an accepted job (attempt 0). Its
        sequence number comes from an agent-wide counter, never from the message;
        answers that name a job are retained, so that a replay can repeat them."""
        with self._tx() as db:
            row = db.execute("INSERT INTO counters(name, value) VALUES ('answers', 1)"
                             " ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value - 1").fetchone()
            seq = int(row[0])
            payload = build(seq)
            self._enqueue(db, topic, payload)
            if job_id is not None:
                db.execute("INSERT OR REPLACE INTO retained(job_id, attempt, seq, topic, payload, created_at)"
                           " VALUES (?,0,?,?,?,?)", (job_id, seq, topic, payload, time.time()))
        return seq

    def has_job(self, job_id: str) -> bool:
        """Whether this agent ever accepted the job id (also after pruning: a copy of a
        job replayed months later must not run again)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM jobs WHERE job_id=? UNION ALL SELECT 1 FROM tombstones"
                                   " WHERE job_id=? LIMIT 1", (job_id, job_id)).fetchone()
        return row is not None

    def get(self, job_id: str, attempt: int | None = None) -> StoredJob | None:
        """A job by id (its latest attempt unless one is named)."""
        q = "SELECT job_id, attempt, spec_json, state, msg_id FROM jobs WHERE job_id=?"
        args: tuple[object, ...] = (job_id,)
        if attempt is not None:
            q += " AND attempt=?"
            args += (attempt,)
        with self._lock:
            row = self._db.execute(q + " ORDER BY attempt DESC LIMIT 1", args).fetchone()
        return None if row is None else StoredJob(row[0], int(row[1]), row[2], JobState(row[3]), row[4])

    def state(self, job_id: str, attempt: int) -> JobState | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM jobs WHERE job_id=? AND attempt=?", (job_id, attempt)).fetchone()
        return None if row is None else JobState(row[0])

    def jobs_in_state(self, *states: JobState) -> list[StoredJob]:
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT job_id, attempt, spec_json, state, msg_id FROM jobs WHERE state IN ({marks})"
                " ORDER BY received_at, rowid", [s.value for s in states]).fetchall()
        return [StoredJob(r[0], int(r[1]), r[2], JobState(r[3]), r[4]) for r in rows]

    # -- retention and replay ---------------------------------------------------------
    def retained(self, job_id: str) -> list[tuple[str, bytes]]:
        """(topic, payload) of a job's retained events, oldest first, byte for byte as sent."""
        with self._lock:
            rows = self._db.execute("SELECT topic, payload FROM retained WHERE job_id=? ORDER BY attempt, seq",
                                    (job_id,)).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def republish(self, items: list[tuple[str, bytes]]) -> None:
        with self._tx() as db:
            for topic, payload in items:
                self._enqueue(db, topic, payload)

    def prune(self, older_than_s: float, now: float | None = None) -> int:
        """Forget finished jobs and retained events older than the retention period."""
        cutoff = (now or time.time()) - older_than_s
        terminal = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED,
                                      JobState.REJECTED)]
        marks = ",".join("?" for _ in terminal)
        with self._tx() as db:
            n = db.execute("DELETE FROM retained WHERE created_at < ?", (cutoff,)).rowcount
            # a job id is remembered for ever (a tombstone is a few dozen bytes)
            db.execute(f"INSERT OR IGNORE INTO tombstones(job_id, forgotten_at) SELECT job_id, ? FROM jobs"
                       f" WHERE updated_at < ? AND state IN ({marks})", (time.time(), cutoff, *terminal))
            db.execute(f"DELETE FROM jobs WHERE updated_at < ? AND state IN ({marks})", (cutoff, *terminal))
        return int(n)

    # -- outbox -------------------------------------------------------------------
    def enqueue(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        with self._tx() as db:
            return self._enqueue(db, topic, payload, qos, retain)

    def pending(self, limit: int = 500, exclude: set[int] | None = None) -> list[OutboxRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?",
                (limit + len(exclude or ()),),
            ).fetchall()
        out = [OutboxRow(int(r[0]), r[1], bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]
        if exclude:
            out = [r for r in out if r.id not in exclude]
        return out[:limit]

    def acknowledge(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id=?", (row_id,))

    def outbox_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class _Transaction:
    """``with`` block holding the store's lock around BEGIN IMMEDIATE ... COMMIT
    (ROLLBACK on any exception, which propagates); ``durable`` commits with fsync."""

    def __init__(self, store: AgentStore, durable: bool):
        self._store = store
        self._db = store._db
        self._durable = durable

    def __enter__(self) -> sqlite3.Connection:
        self._store._lock.acquire()
        try:
            self._store._set_durable(self._durable)
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._store._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        store = self._store
        try:
            self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
            notify = exc_type is None and store._enqueued
        finally:
            store._enqueued = False
            store._lock.release()
        if notify and store.on_enqueue is not None:
            store.on_enqueue()
