"""The agent's small durable store: accepted jobs and the outbox (SQLite, WAL).

A result measured for hours must survive broker outages and agent restarts:
every event is written here before it is published, and deleted only when
the broker acknowledged it (PUBACK).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
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
"""


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    attempt: int
    spec_json: str
    state: str


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class AgentStore:
    """Thread-safe wrapper; one connection guarded by a lock (writes are tiny)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- jobs ---------------------------------------------------------------------
    def has_job(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return row is not None

    def add_job(self, job_id: str, spec_json: str, state: str, attempt: int = 1) -> bool:
        """Insert a job; False if it was already there (duplicate delivery)."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs(job_id, attempt, spec_json, state, received_at, updated_at)"
                " VALUES (?,?,?,?,?,?)",
                (job_id, attempt, spec_json, state, now, now),
            )
        return cur.rowcount == 1

    def set_state(self, job_id: str, attempt: int, state: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, updated_at=? WHERE job_id=? AND attempt=?",
                (state, time.time(), job_id, attempt),
            )

    def transition(self, job_id: str, attempt: int, from_state: str, to_state: str) -> bool:
        """Move a job from one state to another atomically; False if it was not
        in from_state (e.g. a cancel and the worker race for a queued job)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state=?, updated_at=? WHERE job_id=? AND attempt=? AND state=?",
                (to_state, time.time(), job_id, attempt, from_state),
            )
        return cur.rowcount == 1

    def get_spec(self, job_id: str, attempt: int = 1) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT spec_json FROM jobs WHERE job_id=? AND attempt=?", (job_id, attempt)
            ).fetchone()
        return None if row is None else str(row[0])

    def get_state(self, job_id: str, attempt: int = 1) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM jobs WHERE job_id=? AND attempt=?", (job_id, attempt)
            ).fetchone()
        return None if row is None else str(row[0])

    def next_seq(self, job_id: str, attempt: int) -> int:
        """Allocate the next event sequence number for (job, attempt)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET next_seq = next_seq + 1 WHERE job_id=? AND attempt=? RETURNING next_seq - 1",
                (job_id, attempt),
            )
            row = cur.fetchone()
        if row is None:  # rejected jobs are not stored: their only event is seq 0
            return 0
        return int(row[0])

    def jobs_in_state(self, *states: str) -> list[StoredJob]:
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT job_id, attempt, spec_json, state FROM jobs WHERE state IN ({marks})"
                " ORDER BY received_at, rowid",
                states,
            ).fetchall()
        return [StoredJob(r[0], int(r[1]), r[2], r[3]) for r in rows]

    # -- outbox -------------------------------------------------------------------
    def enqueue(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
                (topic, payload, qos, int(retain), time.time()),
            )
        return int(cur.lastrowid or 0)

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
