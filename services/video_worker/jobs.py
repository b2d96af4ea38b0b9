"""Durable job table: what the worker owes each recording, surviving kill -9 at any line."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class JobState(StrEnum):
    pending = "pending"      # raw recording waits to be processed
    processed = "processed"  # output written; waits to be uploaded
    done = "done"            # uploaded, row written, local files removed
    failed = "failed"        # the recording itself is unreadable: kept for a human


@dataclass(frozen=True)
class Job:
    booking_id: str
    user_id: str
    raw_file: str
    state: JobState
    attempts: int
    next_attempt_at: float
    last_error: str | None


def backoff_s(attempts: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential with full jitter, so many devices coming back online do not retry in step."""
    return random.uniform(0, min(cap, base * 2 ** min(attempts, 16)))


class JobTable:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (booking_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
            " raw_file TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
            " next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL)"
        )

    def add(self, booking_id: str, user_id: str, raw_file: str) -> bool:
        """Idempotent: a repeated event or a rescan never creates a second job."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (booking_id, user_id, raw_file, state, created_at)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (booking_id, user_id, raw_file, time.time()),
            )
            return cur.rowcount > 0

    def get(self, booking_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE booking_id = ?", (booking_id,)).fetchone()
        return _job(row) if row else None

    def next_due(self, now: float) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE state IN ('pending', 'processed') AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, created_at LIMIT 1",
                (now,),
            ).fetchone()
        return _job(row) if row else None

    def seconds_until_next(self, now: float) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT min(next_attempt_at) FROM jobs WHERE state IN ('pending', 'processed')"
            ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

    def set_state(self, booking_id: str, state: JobState) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state = ?, attempts = 0, next_attempt_at = 0, last_error = NULL"
                             " WHERE booking_id = ?", (state.value, booking_id))

    def retry_later(self, booking_id: str, error: str) -> float:
        with self._lock:
            attempts = self._db.execute("SELECT attempts FROM jobs WHERE booking_id = ?",
                                        (booking_id,)).fetchone()[0]
            delay = backoff_s(attempts)
            self._db.execute("UPDATE jobs SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                             " WHERE booking_id = ?", (time.time() + delay, error[:500], booking_id))
        return delay

    def fail(self, booking_id: str, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state = 'failed', last_error = ? WHERE booking_id = ?",
                             (error[:500], booking_id))

    def count(self, *states: JobState) -> int:
        marks = ",".join("?" * len(states))
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM jobs WHERE state IN ({marks})",
                                        [s.value for s in states]).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row: tuple) -> Job:
    return Job(booking_id=row[0], user_id=row[1], raw_file=row[2], state=JobState(row[3]), attempts=row[4],
               next_attempt_at=row[5], last_error=row[6])
