"""Durable work table shared by every worker on one DATA_DIR: what is owed per booking, who is on it.

SQLite in WAL mode, one file for all worker processes (a shared volume). Each row is claimed with a
lease (owner + expiry) inside a write transaction, so two workers never take the same row; the owner's
heartbeat keeps renewing it, so a dead worker's lease simply runs out and anyone may claim the row.
Nothing like a lock file survives a crash. Every transition names its owner and fails (LostLease)
if the lease was lost meanwhile, so a worker that was presumed dead cannot overwrite newer work.

jobs   one per booking: pending -> processed -> done, or failed (recording unreadable, kept for a human)
parts  one per recorder segment: pending -> done | skipped (unreadable) | failed | gone (file vanished)
plans  one per booking: the output format and user media frozen at its first segment, so all parts match
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.backoff import exponential_s
from shared.durable_db import open_durable_db, write_tx
from shared.job_states import JobState


class PartState(StrEnum):
    pending = "pending"
    done = "done"
    skipped = "skipped"  # no frame of the segment decodes: the video goes on without it
    failed = "failed"  # kept failing for another reason: the booking is made from the whole recording
    gone = "gone"  # the segment file vanished before it was processed


class LostLease(Exception):
    """Another worker owns the row now (this one was presumed dead): drop the work, change nothing."""


@dataclass(frozen=True)
class Job:
    booking_id: str
    user_id: str
    raw_file: str | None  # relative to RAW_RECORDINGS_DIR; None until the joined recording exists
    state: JobState
    mode: str  # "auto": from processed segments when complete; "whole": from the joined recording
    frames_expected: int | None  # video packets of the joined recording (recording/finished), if known
    frames_covered: int | None  # recording packets the produced video was made from
    attempts: int
    next_attempt_at: float
    last_error: str | None
    owner: str | None
    lease_until: float
    created_at: float
    cleaned: bool
    warnings: list[str] = field(default_factory=list)
    route: str | None = None  # how the video was made: "remux" (segments as they are) or "transcode"
    route_reasons: list[str] = field(default_factory=list)  # why not remux (remux_check.Reason values)


@dataclass(frozen=True)
class Part:
    booking_id: str
    idx: int
    user_id: str | None
    file: str  # relative to RAW_RECORDINGS_DIR
    closed: bool  # the recorder finished writing it
    start_at: float | None  # capture time (epoch s) of its first / last frame
    end_at: float | None
    state: PartState
    frames_in: int | None
    frames_out: int | None
    output: str | None  # relative to PROCESSED_RECORDINGS_DIR
    fmt_key: str | None
    has_audio: bool
    warnings: list[str]
    attempts: int
    next_attempt_at: float
    owner: str | None
    lease_until: float
    route: str | None = None  # "remux": the segment itself is the piece; "transcode": decoded and encoded
    route_reason: str | None = None  # why it was transcoded (remux_check.Reason value)


def backoff_s(attempts: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential with full jitter, so many devices coming back online do not retry in step."""
    return exponential_s(attempts, base, cap, jitter=(0.0, 1.0), max_doublings=16)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (booking_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, raw_file TEXT,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS parts (booking_id TEXT NOT NULL, idx INTEGER NOT NULL, user_id TEXT,
    file TEXT NOT NULL, closed INTEGER NOT NULL DEFAULT 0, start_at REAL, end_at REAL,
    state TEXT NOT NULL DEFAULT 'pending', frames_in INTEGER, frames_out INTEGER, output TEXT, fmt_key TEXT,
    has_audio INTEGER NOT NULL DEFAULT 0, warnings TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT,
    owner TEXT, lease_until REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    PRIMARY KEY (booking_id, idx));
CREATE TABLE IF NOT EXISTS plans (booking_id TEXT PRIMARY KEY, plan TEXT NOT NULL, created_at REAL NOT NULL);
"""
# Columns added since the first release of the table (a device upgraded in place keeps its queue).
_JOB_COLUMNS = {
    "mode": "TEXT NOT NULL DEFAULT 'auto'",
    "frames_expected": "INTEGER",
    "frames_covered": "INTEGER",
    "owner": "TEXT",
    "lease_until": "REAL NOT NULL DEFAULT 0",
    "cleaned": "INTEGER NOT NULL DEFAULT 0",
    "warnings": "TEXT NOT NULL DEFAULT '[]'",
    "updated_at": "REAL NOT NULL DEFAULT 0",
    "route": "TEXT",
    "route_reasons": "TEXT NOT NULL DEFAULT '[]'",
}
_PART_COLUMNS = {
    "route": "TEXT",
    "route_reason": "TEXT",
}
_JOB_FIELDS = ("booking_id", "user_id", "raw_file", "state", "mode", "frames_expected", "frames_covered",
               "attempts", "next_attempt_at", "last_error", "owner", "lease_until", "created_at", "cleaned",
               "warnings", "route", "route_reasons")
_PART_FIELDS = ("booking_id", "idx", "user_id", "file", "closed", "start_at", "end_at", "state", "frames_in",
                "frames_out", "output", "fmt_key", "has_audio", "warnings", "attempts", "next_attempt_at", "owner",
                "lease_until", "route", "route_reason")


class JobTable:
    def __init__(self, path: Path, lease_s: float = 30.0) -> None:
        self.lease_s = lease_s
        self._lock = threading.Lock()
        self._db = open_durable_db(path, timeout_s=60)
        with self._tx() as db:
            # one statement at a time: executescript() would COMMIT the transaction
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)
            have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, decl in _JOB_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            have = {row[1] for row in db.execute("PRAGMA table_info(parts)")}
            for name, decl in _PART_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE parts ADD COLUMN {name} {decl}")

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A claim reads and writes without a race (shared.durable_db.write_tx)."""
        return write_tx(self._db, self._lock)

    def _read(self, sql: str, args: Iterable[Any] | dict[str, Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- jobs ------------------------------------------------------------------------------------

    def add(self, booking_id: str, user_id: str, raw_file: str | None = None,
            frames_expected: int | None = None) -> bool:
        """Idempotent: a repeated event or a rescan never creates a second job; it only adds missing facts."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (booking_id, user_id, raw_file, state, frames_expected, created_at,"
                " updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                (booking_id, user_id, raw_file, frames_expected, now, now))
            if cur.rowcount == 0:
                db.execute("UPDATE jobs SET raw_file = coalesce(raw_file, ?),"
                           " frames_expected = coalesce(?, frames_expected) WHERE booking_id = ?",
                           (raw_file, frames_expected, booking_id))
            return cur.rowcount > 0

    def get(self, booking_id: str) -> Job | None:
        rows = self._read(f"SELECT {', '.join(_JOB_FIELDS)} FROM jobs WHERE booking_id = ?", (booking_id,))
        return _job(rows[0]) if rows else None

    def claim(self, owner: str, states: Iterable[JobState], now: float | None = None) -> Job | None:
        """Take the most overdue free job in one of `states` (free = no owner, or its lease ran out)."""
        now = time.time() if now is None else now
        names = [s.value for s in states]
        marks = ",".join("?" * len(names))
        with self._tx() as db:
            row = db.execute(
                f"SELECT booking_id FROM jobs WHERE state IN ({marks}) AND next_attempt_at <= ?"
                " AND (owner IS NULL OR lease_until < ?) ORDER BY next_attempt_at, created_at LIMIT 1",
                (*names, now, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET owner = ?, lease_until = ? WHERE booking_id = ?",
                       (owner, now + self.lease_s, row[0]))
            job = db.execute(f"SELECT {', '.join(_JOB_FIELDS)} FROM jobs WHERE booking_id = ?", row).fetchone()
        return _job(job)

    def update(self, booking_id: str, owner: str, *, keep: bool = False, **fields: Any) -> None:
        """Change fields of a job this owner holds; releases it unless keep. Raises LostLease."""
        fields = {k: (json.dumps(v) if k in ("warnings", "route_reasons") else v.value if isinstance(v, StrEnum)
                      else v)
                  for k, v in fields.items()}
        if not keep:
            fields.update(owner=None, lease_until=0)
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {sets} WHERE booking_id = :_id AND owner = :_owner",
                             {**fields, "_id": booking_id, "_owner": owner})
            if cur.rowcount != 1:
                raise LostLease(f"job {booking_id} is no longer held by {owner}")

    def set_state(self, booking_id: str, owner: str, state: JobState, **fields: Any) -> None:
        self.update(booking_id, owner, state=state, attempts=0, next_attempt_at=0, last_error=None, **fields)

    def retry_later(self, booking_id: str, owner: str, error: str, delay: float | None = None,
                    count: bool = True) -> float:
        """Release the job until `delay` (default: exponential backoff with jitter) has passed."""
        job = self.get(booking_id)
        attempts = job.attempts if job else 0
        delay = backoff_s(attempts) if delay is None else delay
        extra = {"attempts": attempts + 1} if count else {}
        self.update(booking_id, owner, next_attempt_at=time.time() + delay, last_error=error[:500], **extra)
        return delay

    def fail(self, booking_id: str, owner: str, error: str) -> None:
        self.update(booking_id, owner, state=JobState.failed, last_error=error[:500])

    def reopen(self, booking_id: str, mode: str, reason: str) -> None:
        """Make a processed or done job again (its output no longer matches the recording), unless someone holds it."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'pending', mode = ?, attempts = 0, next_attempt_at = 0,"
                       " last_error = ?, cleaned = 0, frames_covered = NULL, updated_at = ?"
                       " WHERE booking_id = ? AND (owner IS NULL OR lease_until < ?)",
                       (mode, reason[:500], now, booking_id, now))

    def mark_cleaned(self, booking_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET cleaned = 1 WHERE booking_id = ?", (booking_id,))

    def uncleaned_done(self) -> list[Job]:
        rows = self._read(f"SELECT {', '.join(_JOB_FIELDS)} FROM jobs WHERE state = 'done' AND cleaned = 0")
        return [_job(r) for r in rows]

    def prune(self, older_than_s: float = 30 * 86400) -> int:
        """Forget finished bookings long gone (their rows only grow the table)."""
        cutoff = time.time() - older_than_s
        with self._tx() as db:
            gone = [r[0] for r in db.execute(
                "SELECT booking_id FROM jobs WHERE state = 'done' AND cleaned = 1 AND updated_at < ?", (cutoff,))]
            for booking_id in gone:
                for table in ("jobs", "parts", "plans"):
                    db.execute(f"DELETE FROM {table} WHERE booking_id = ?", (booking_id,))
        return len(gone)

    def seconds_until_next(self, states: Iterable[JobState], now: float) -> float | None:
        names = [s.value for s in states]
        rows = self._read(f"SELECT min(max(next_attempt_at, CASE WHEN owner IS NULL THEN 0 ELSE lease_until END))"
                          f" FROM jobs WHERE state IN ({','.join('?' * len(names))})", names)
        return None if rows[0][0] is None else max(0.0, rows[0][0] - now)

    def pending_jobs(self, created_before: float) -> list[Job]:
        rows = self._read(f"SELECT {', '.join(_JOB_FIELDS)} FROM jobs WHERE state = 'pending' AND created_at < ?",
                          (created_before,))
        return [_job(r) for r in rows]

    def forget(self, booking_id: str, state: JobState) -> bool:
        """Remove a job still in `state` and held by no one (with its parts and plan); False if it moved on."""
        now = time.time()
        with self._tx() as db:
            gone = db.execute("DELETE FROM jobs WHERE booking_id = ? AND state = ? AND (owner IS NULL OR"
                              " lease_until < ?)", (booking_id, state.value, now)).rowcount > 0
            if gone:
                db.execute("DELETE FROM parts WHERE booking_id = ?", (booking_id,))
                db.execute("DELETE FROM plans WHERE booking_id = ?", (booking_id,))
        return gone

    def count(self, *states: JobState) -> int:
        marks = ",".join("?" * len(states))
        return int(self._read(f"SELECT count(*) FROM jobs WHERE state IN ({marks})", [s.value for s in states])[0][0])

    # ---- leases ----------------------------------------------------------------------------------

    def renew(self, owners: Iterable[str], now: float | None = None) -> int:
        """The heartbeat: push the expiry of every row these owners hold. Returns how many rows."""
        now = time.time() if now is None else now
        owners = list(owners)
        marks = ",".join("?" * len(owners))
        with self._tx() as db:
            n = db.execute(f"UPDATE jobs SET lease_until = ? WHERE owner IN ({marks})",
                           (now + self.lease_s, *owners)).rowcount
            n += db.execute(f"UPDATE parts SET lease_until = ? WHERE owner IN ({marks})",
                            (now + self.lease_s, *owners)).rowcount
        return n

    def release_all(self, owners: Iterable[str]) -> None:
        """At start-up: rows held by this worker's previous (crashed) run are free again at once."""
        owners = list(owners)
        marks = ",".join("?" * len(owners))
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET owner = NULL, lease_until = 0 WHERE owner IN ({marks})", owners)
            db.execute(f"UPDATE parts SET owner = NULL, lease_until = 0 WHERE owner IN ({marks})", owners)

    # ---- parts -----------------------------------------------------------------------------------

    def add_part(self, booking_id: str, idx: int, file: str, *, user_id: str | None = None, closed: bool = False,
                 start_at: float | None = None, end_at: float | None = None) -> bool:
        """Idempotent; a later call may only add facts (closed, times, user)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO parts (booking_id, idx, user_id, file, closed, start_at, end_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (booking_id, idx, user_id, file, int(closed), start_at, end_at, time.time()))
            if cur.rowcount == 0:
                # A close makes a part waiting for it due at once (the remux path waits for the close).
                db.execute("UPDATE parts SET next_attempt_at = CASE WHEN ? > closed AND state = 'pending'"
                           " THEN 0 ELSE next_attempt_at END, closed = max(closed, ?), user_id = coalesce(user_id, ?),"
                           " start_at = coalesce(?, start_at), end_at = coalesce(?, end_at)"
                           " WHERE booking_id = ? AND idx = ?",
                           (int(closed), int(closed), user_id, start_at, end_at, booking_id, idx))
            return cur.rowcount > 0

    def mark_closed(self, booking_id: str, idx: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE parts SET next_attempt_at = CASE WHEN closed = 0 AND state = 'pending' THEN 0"
                       " ELSE next_attempt_at END, closed = 1 WHERE booking_id = ? AND idx = ?", (booking_id, idx))

    def is_closed(self, booking_id: str, idx: int) -> bool:
        rows = self._read("SELECT closed FROM parts WHERE booking_id = ? AND idx = ?", (booking_id, idx))
        return bool(rows and rows[0][0])

    def parts(self, booking_id: str) -> list[Part]:
        rows = self._read(f"SELECT {', '.join(_PART_FIELDS)} FROM parts WHERE booking_id = ? ORDER BY idx",
                          (booking_id,))
        return [_part(r) for r in rows]

    def open_parts(self) -> list[Part]:
        rows = self._read(f"SELECT {', '.join(_PART_FIELDS)} FROM parts WHERE closed = 0 AND state = 'pending'")
        return [_part(r) for r in rows]

    def claim_part(self, owner: str, now: float | None = None) -> Part | None:
        """Closed segments first (ready now), then one still being written (followed live), oldest booking first."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT booking_id, idx FROM parts WHERE state = 'pending' AND next_attempt_at <= ?"
                " AND (owner IS NULL OR lease_until < ?)"
                " ORDER BY closed DESC, start_at IS NULL, start_at, created_at, idx LIMIT 1",
                (now, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE parts SET owner = ?, lease_until = ? WHERE booking_id = ? AND idx = ?",
                       (owner, now + self.lease_s, *row))
            part = db.execute(f"SELECT {', '.join(_PART_FIELDS)} FROM parts WHERE booking_id = ? AND idx = ?",
                              row).fetchone()
        return _part(part)

    def finish_part(self, booking_id: str, idx: int, owner: str, state: PartState, **fields: Any) -> None:
        """Record a part's outcome (releasing it). Raises LostLease."""
        fields = {k: (json.dumps(v) if k == "warnings" else int(v) if isinstance(v, bool)
                      else v.value if isinstance(v, StrEnum) else v)
                  for k, v in fields.items()}
        fields.update(state=state.value, owner=None, lease_until=0)
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._tx() as db:
            cur = db.execute(f"UPDATE parts SET {sets} WHERE booking_id = :_id AND idx = :_idx AND owner = :_owner",
                             {**fields, "_id": booking_id, "_idx": idx, "_owner": owner})
            if cur.rowcount != 1:
                raise LostLease(f"part {booking_id}/{idx} is no longer held by {owner}")

    def retry_part(self, booking_id: str, idx: int, owner: str, error: str, max_attempts: int = 3) -> bool:
        """Release a part after an unexpected error; returns False once it has failed too often (state failed)."""
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM parts WHERE booking_id = ? AND idx = ? AND owner = ?",
                             (booking_id, idx, owner)).fetchone()
            if row is None:
                raise LostLease(f"part {booking_id}/{idx} is no longer held by {owner}")
            attempts = row[0] + 1
            state = "failed" if attempts >= max_attempts else "pending"
            db.execute("UPDATE parts SET attempts = ?, state = ?, last_error = ?, next_attempt_at = ?, owner = NULL,"
                       " lease_until = 0 WHERE booking_id = ? AND idx = ?",
                       (attempts, state, error[:500], time.time() + backoff_s(attempts, base=1.0, cap=10.0),
                        booking_id, idx))
        return state == "pending"

    def release_part(self, booking_id: str, idx: int, owner: str, delay: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE parts SET owner = NULL, lease_until = 0, next_attempt_at = ?"
                       " WHERE booking_id = ? AND idx = ? AND owner = ?",
                       (time.time() + delay, booking_id, idx, owner))

    def seconds_until_next_part(self, now: float) -> float | None:
        rows = self._read("SELECT min(max(next_attempt_at, CASE WHEN owner IS NULL THEN 0 ELSE lease_until END))"
                          " FROM parts WHERE state = 'pending'")
        return None if rows[0][0] is None else max(0.0, rows[0][0] - now)

    # ---- plans -----------------------------------------------------------------------------------

    def plan(self, booking_id: str, proposal: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The booking's plan; `proposal` is stored if there is none yet (the first writer wins)."""
        with self._tx() as db:
            if proposal is not None:
                db.execute("INSERT OR IGNORE INTO plans VALUES (?, ?, ?)",
                           (booking_id, json.dumps(proposal), time.time()))
            row = db.execute("SELECT plan FROM plans WHERE booking_id = ?", (booking_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row: tuple) -> Job:
    d = dict(zip(_JOB_FIELDS, row, strict=True))
    d["state"] = JobState(d["state"])
    d["cleaned"] = bool(d["cleaned"])
    d["warnings"] = json.loads(d["warnings"] or "[]")
    d["route_reasons"] = json.loads(d["route_reasons"] or "[]")
    return Job(**d)


def _part(row: tuple) -> Part:
    d = dict(zip(_PART_FIELDS, row, strict=True))
    d["state"] = PartState(d["state"])
    d["closed"] = bool(d["closed"])
    d["has_audio"] = bool(d["has_audio"])
    d["warnings"] = json.loads(d["warnings"] or "[]")
    return Part(**d)
