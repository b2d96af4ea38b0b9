"""The clips to make, in DATA_DIR/state/highlights.sqlite3, shared by every worker of this DATA_DIR.

A clip arrives as the recorder's `highlight/clip` event (again, same id, when a press extends it); each row is
claimed under a lease, so a worker killed mid-clip leaves it to the next claim, and redoing a clip is harmless
(its object path and videos row are deterministic). An extension that arrives after the clip was made reopens it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.durable_db import enable_wal, write_tx
from shared.payloads import HighlightClip

TABLE_FILE = "highlights.sqlite3"
MAX_ATTEMPTS = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    booking_id TEXT NOT NULL, clip_id TEXT NOT NULL, user_id TEXT NOT NULL, camera_id TEXT NOT NULL,
    start_at REAL NOT NULL, end_at REAL NOT NULL, presses INTEGER NOT NULL, request_ids TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, owner TEXT, lease_until REAL,
    video_id TEXT, error TEXT, received_at REAL NOT NULL, done_at REAL,
    PRIMARY KEY (booking_id, clip_id));
CREATE INDEX IF NOT EXISTS clips_due ON clips (state, next_try);
"""
_FIELDS = ("booking_id", "clip_id", "user_id", "camera_id", "start_at", "end_at", "presses", "request_ids", "state",
           "attempts", "received_at")


@dataclass(frozen=True)
class ClipRow:
    booking_id: str
    clip_id: str
    user_id: str
    camera_id: str
    start_at: float
    end_at: float
    presses: int
    request_ids: list[str]
    state: str
    attempts: int
    received_at: float

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_at, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_at, UTC)


def _row(values: tuple) -> ClipRow:
    data = dict(zip(_FIELDS, values, strict=True))
    data["request_ids"] = json.loads(data["request_ids"])
    return ClipRow(**data)


class ClipTable:
    def __init__(self, path: Path, lease_s: float = 60.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_s = lease_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        enable_wal(self._db, 30)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_tx(self._db, self._lock)

    def add(self, clip: HighlightClip) -> bool:
        """Idempotent; a later end reopens a clip already made. True when there is something (new) to do."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT end_at, state FROM clips WHERE booking_id = ? AND clip_id = ?",
                             (clip.booking_id, clip.clip_id)).fetchone()
            end = clip.end_at.timestamp()
            if row is None:
                db.execute("INSERT INTO clips (booking_id, clip_id, user_id, camera_id, start_at, end_at, presses,"
                           " request_ids, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (clip.booking_id, clip.clip_id, clip.user_id, clip.camera_id, clip.start_at.timestamp(),
                            end, clip.presses, json.dumps(clip.request_ids), now))
                return True
            if end <= row[0] + 1e-6:
                return False  # a repeat (redelivery) or an older copy
            reopen = row[1] != "pending"
            db.execute("UPDATE clips SET end_at = ?, presses = max(presses, ?), request_ids = ?,"
                       " state = 'pending', attempts = CASE WHEN ? THEN 0 ELSE attempts END,"
                       " next_try = CASE WHEN ? THEN 0 ELSE next_try END WHERE booking_id = ? AND clip_id = ?",
                       (end, clip.presses, json.dumps(clip.request_ids), reopen, reopen, clip.booking_id,
                        clip.clip_id))
            return True

    def claim(self, owner: str, now: float | None = None) -> ClipRow | None:
        """The pending clip that ends first, not leased by another live worker."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(f"SELECT {', '.join(_FIELDS)} FROM clips WHERE state = 'pending' AND next_try <= ?"
                             " AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY end_at LIMIT 1",
                             (now, owner, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE clips SET owner = ?, lease_until = ?, attempts = attempts + 1"
                       " WHERE booking_id = ? AND clip_id = ?", (owner, now + self.lease_s, row[0], row[1]))
        clip = _row(row)
        return ClipRow(**{**clip.__dict__, "attempts": clip.attempts + 1})

    def current(self, booking_id: str, clip_id: str) -> ClipRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM clips WHERE booking_id = ? AND clip_id = ?",
                                   (booking_id, clip_id)).fetchone()
        return _row(row) if row else None

    def renew(self, booking_id: str, clip_id: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE clips SET lease_until = ? WHERE booking_id = ? AND clip_id = ? AND owner = ?",
                       (time.time() + self.lease_s, booking_id, clip_id, owner))

    def done(self, clip: ClipRow, owner: str, video_id: str, end_at: float) -> bool:
        """False when the clip was extended past `end_at` meanwhile: it stays pending, to be made again."""
        with self._tx() as db:
            cur = db.execute("UPDATE clips SET state = 'done', owner = NULL, lease_until = NULL, video_id = ?,"
                             " error = NULL, done_at = ? WHERE booking_id = ? AND clip_id = ? AND end_at <= ?",
                             (video_id, time.time(), clip.booking_id, clip.clip_id, end_at + 1e-6))
            if cur.rowcount == 0:
                db.execute("UPDATE clips SET owner = NULL, lease_until = NULL, attempts = 0"
                           " WHERE booking_id = ? AND clip_id = ?", (clip.booking_id, clip.clip_id))
            return cur.rowcount > 0

    def retry(self, clip: ClipRow, error: str, delay: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE clips SET owner = NULL, lease_until = NULL, error = ?, next_try = ?"
                       " WHERE booking_id = ? AND clip_id = ?", (error, time.time() + delay, clip.booking_id,
                                                                 clip.clip_id))

    def fail(self, clip: ClipRow, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE clips SET state = 'failed', owner = NULL, lease_until = NULL, error = ?"
                       " WHERE booking_id = ? AND clip_id = ?", (error, clip.booking_id, clip.clip_id))

    def unfinished(self, booking_id: str) -> int:
        """How many of the booking's clips are still to be made (pending, whether due now or retried later)."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM clips WHERE booking_id = ? AND state = 'pending'",
                                   (booking_id,)).fetchone()
        return int(row[0])

    def seconds_until_next(self, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT min(max(next_try, coalesce(lease_until, 0))) FROM clips"
                                   " WHERE state = 'pending'").fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

    def close(self) -> None:
        with self._lock:
            self._db.close()
