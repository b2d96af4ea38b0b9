"""The durable queue of cloud writes (SQLite under DATA_DIR/state), shared by every service process.

Each operation carries an ordering key (a booking id, `user:<id>`, `status:<camera>`): operations with
the same key are applied strictly in the order they were added, so the cloud never sees a booking's
`video_uploaded` before its object and its videos row. An operation the cloud refused stays here as failed
(`failed_at` set) and holds back every later operation of its key until an operator replays it; the hold is
read from this file, so it survives restarts. One process at a time drains, holding a lease that expires (a
crashed holder blocks nobody for longer than the lease).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.durable_db import open_durable_db, write_tx
from shared.store.cloud.tus import TusState


def _alive(holder: str) -> bool:
    """A holder is `host:pid:nonce`. On this host (same PID namespace) a dead pid frees the lease at once;
    elsewhere (another container) only the expiry does."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SNAPSHOT_KEY_PREFIX = "status:"
"""Keys of the device's system_status rows: each row supersedes the one before, so a refused one holds
nothing back (holding would freeze the venue's view of the device and grow the outbox a row a minute)."""
_BEHIND_REFUSED = (f"(o.key NOT LIKE '{SNAPSHOT_KEY_PREFIX}%' AND EXISTS (SELECT 1 FROM ops f WHERE f.key = o.key"
                   " AND f.failed_at IS NOT NULL AND f.id < o.id))")
"""An operation `o` queued after a refused operation of its key (ops_failed_key answers it)."""


def holds_after_refusal(key: str) -> bool:
    """Whether a refused operation of `key` holds back the key's later ones (everything but status rows)."""
    return not key.startswith(SNAPSHOT_KEY_PREFIX)


@dataclass(frozen=True)
class CloudFault:
    """A condition an operator must fix (`<service>:<fault>`, e.g. storage:auth) while its writes are retried."""

    name: str
    message: str
    since: float
    seen: float


@dataclass(frozen=True)
class CloudOp:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class OpRecord:
    """An operation with everything the outbox knows of it, for the operator (list, show, replay, drop)."""

    op: CloudOp
    created_at: float
    last_error: str | None
    failed_at: float | None
    dropped_at: float | None = None

    @property
    def refused(self) -> bool:
        return self.failed_at is not None


_RECORD_COLUMNS = "id, key, kind, payload, attempts, created_at, last_error, failed_at"


TOUCHED_KEEP_S = 3600.0


class CloudOutbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_durable_db(path)
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS ops (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,"
            " kind TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at REAL);"
            "CREATE INDEX IF NOT EXISTS ops_pending_key ON ops (key) WHERE failed_at IS NULL;"
            "CREATE INDEX IF NOT EXISTS ops_failed_key ON ops (key, id) WHERE failed_at IS NOT NULL;"
            "CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS seen_in_cloud (booking_id TEXT PRIMARY KEY);"
            # The latest operation queued per key, kept after it is applied: a pull whose fetch began before it
            # must not take the fetched row over it (touched_since), however fast the drainer was.
            "CREATE TABLE IF NOT EXISTS touched (key TEXT PRIMARY KEY, op_id INTEGER NOT NULL, at REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS cloud_faults (name TEXT PRIMARY KEY, message TEXT NOT NULL,"
            " since REAL NOT NULL, seen REAL NOT NULL);"
            # Refused operations an operator dropped: kept as the record of what the cloud never got (a dropped
            # video upload also keeps its mirror copy from the disk guard: it is the only copy there is).
            "CREATE TABLE IF NOT EXISTS dropped (id INTEGER PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL,"
            " payload TEXT NOT NULL, attempts INTEGER NOT NULL, created_at REAL NOT NULL, last_error TEXT,"
            " failed_at REAL, dropped_at REAL NOT NULL);"
        )
        self.tus = TusState(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- operations ----------------------------------------------------------------------------------

    def add(self, kind: str, key: str, payload: dict[str, Any]) -> int:
        now = time.time()
        with self._lock:
            cur = self._db.execute("INSERT INTO ops (key, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                                   (key, kind, json.dumps(payload), now))
            op_id = int(cur.lastrowid or 0)
            self._db.execute("INSERT INTO touched (key, op_id, at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
                             " SET op_id = excluded.op_id, at = excluded.at", (key, op_id, now))
            return op_id

    def mark(self) -> int:
        """The id of the latest operation ever queued (applied ones included): taken before a pull's fetch."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'ops'").fetchone()
        return int(row[0]) if row else 0

    def touched_since(self, mark: int) -> set[str]:
        """Keys with an operation queued after `mark`, applied or not: a row fetched before it is stale. Entries
        older than TOUCHED_KEEP_S go (no fetch lasts that long), so the table stays as small as a day's keys."""
        with self._lock:
            self._db.execute("DELETE FROM touched WHERE at < ?", (time.time() - TOUCHED_KEEP_S,))
            return {r[0] for r in self._db.execute("SELECT key FROM touched WHERE op_id > ?", (mark,))}

    def _select(self, where: str, limit: int = -1, params: tuple[object, ...] = ()) -> list[CloudOp]:
        """Operations matching `where`, oldest first (limit -1: all)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, key, kind, payload, attempts FROM ops o WHERE {where} ORDER BY id LIMIT ?",
                (*params, limit)).fetchall()
        return [CloudOp(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def pending(self, limit: int = 500) -> list[CloudOp]:
        """Every operation not yet applied, including those held behind a refused one."""
        return self._select("failed_at IS NULL", limit)

    def runnable(self, limit: int = 500) -> list[CloudOp]:
        """What the drainer may apply: pending and not behind a refused operation of the same key. Filtered
        here, before the limit, so a key held for days never crowds the other keys out of a pass."""
        return self._select(f"failed_at IS NULL AND NOT {_BEHIND_REFUSED}", limit)

    def blocked(self, limit: int = 500) -> list[CloudOp]:
        """Pending operations held behind a refused one of their key: kept, in order, for after its replay."""
        return self._select(f"failed_at IS NULL AND {_BEHIND_REFUSED}", limit)

    def has_runnable(self) -> bool:
        """A read, so an idle drainer (or one facing only held keys) does not take the lease every second."""
        with self._lock:
            return self._db.execute(
                f"SELECT 1 FROM ops o WHERE failed_at IS NULL AND NOT {_BEHIND_REFUSED} LIMIT 1").fetchone() is not None

    def done(self, op_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM ops WHERE id = ?", (op_id,))

    def attempt_failed(self, op_id: int, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE ops SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, op_id))

    def reject(self, op_id: int, error: str) -> None:
        """Kept, not deleted: a refused write is evidence, and an operator may replay it (`replay`). Until then
        the later operations of its key wait (`blocked`): applying them would reorder the key."""
        with self._lock:
            self._db.execute("UPDATE ops SET attempts = attempts + 1, last_error = ?, failed_at = ? WHERE id = ?",
                             (error, time.time(), op_id))

    def replay(self, op_id: int) -> bool:
        """An operator's retry of a refused operation (once its cause is fixed): it becomes pending again, first
        of its key, and the operations it held follow it in order. False when `op_id` is not a refused one."""
        with self._lock:
            cur = self._db.execute("UPDATE ops SET failed_at = NULL WHERE id = ? AND failed_at IS NOT NULL", (op_id,))
            return cur.rowcount == 1

    # ---- what an operator sees and does (ezrec outbox, /outbox, the dashboard) -------------------------------

    @staticmethod
    def _record(row: tuple[Any, ...], dropped_at: float | None = None) -> OpRecord:
        return OpRecord(CloudOp(row[0], row[1], row[2], json.loads(row[3]), row[4]), row[5], row[6], row[7], dropped_at)

    def record(self, op_id: int) -> OpRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM ops WHERE id = ?", (op_id,)).fetchone()
        return None if row is None else self._record(row)

    def records(self, where: str, limit: int = -1) -> list[OpRecord]:
        """Operations matching `where` (on the table aliased `o`), oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM ops o WHERE {where} ORDER BY id LIMIT ?",
                                    (limit,)).fetchall()
        return [self._record(row) for row in rows]

    def stuck(self, limit: int = 500) -> list[OpRecord]:
        """Refused operations, those held behind them, and pending ones whose last attempt failed (retrying)."""
        return self.records(f"failed_at IS NOT NULL OR {_BEHIND_REFUSED} OR last_error IS NOT NULL", limit)

    def held_count(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM ops o WHERE failed_at IS NULL AND {_BEHIND_REFUSED}"
                                        ).fetchone()[0])

    def drop(self, op_id: int) -> OpRecord | None:
        """An operator's decision that a refused operation will never be applied: moved to `dropped` (kept as the
        record), so the operations it held go on. None when `op_id` is not a refused operation."""
        now = time.time()
        with write_tx(self._db, self._lock) as db:
            row = db.execute(f"SELECT {_RECORD_COLUMNS} FROM ops WHERE id = ? AND failed_at IS NOT NULL",
                             (op_id,)).fetchone()
            if row is not None:
                db.execute(f"INSERT OR REPLACE INTO dropped ({_RECORD_COLUMNS}, dropped_at)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, now))
                db.execute("DELETE FROM ops WHERE id = ?", (op_id,))
        return None if row is None else self._record(row, now)

    def dropped(self, limit: int = 20) -> list[OpRecord]:
        """The latest dropped operations, newest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_RECORD_COLUMNS}, dropped_at FROM dropped ORDER BY dropped_at DESC,"
                                    " id DESC LIMIT ?", (limit,)).fetchall()
        return [self._record(row[:8], row[8]) for row in rows]

    def dropped_video_paths(self) -> set[str]:
        """Videos whose upload an operator dropped: their mirror copy is the only one."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM dropped WHERE kind = 'object_put'").fetchall()
        paths = set()
        for (payload,) in rows:
            data = json.loads(payload)
            if data.get("bucket") == "videos":
                paths.add(data["path"])
        return paths

    def has_pending(self, key: str, kind: str | None = None) -> bool:
        sql = "SELECT 1 FROM ops WHERE failed_at IS NULL AND key = ?" + (" AND kind = ?" if kind else "")
        with self._lock:
            return self._db.execute(sql + " LIMIT 1", (key, kind) if kind else (key,)).fetchone() is not None

    def kept(self, kinds: tuple[str, ...]) -> list[CloudOp]:
        """Operations of these kinds still here, pending or refused. Applied ones are deleted, so a write
        missing from this list (and known to have been queued) is confirmed by the cloud."""
        return self._select(f"kind IN ({', '.join('?' * len(kinds))})", params=kinds)

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM ops WHERE failed_at IS NULL").fetchone()[0])

    def refusals(self, limit: int = -1) -> list[tuple[CloudOp, str, float]]:
        """Refused operations with their error and when they were refused, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, kind, payload, attempts, last_error, failed_at FROM ops WHERE failed_at IS NOT NULL"
                " ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(CloudOp(r[0], r[1], r[2], json.loads(r[3]), r[4]), r[5] or "", r[6]) for r in rows]

    def refused_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM ops WHERE failed_at IS NOT NULL").fetchone()[0])

    def rejected(self) -> list[tuple[int, str, str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT id, key, kind, last_error FROM ops WHERE failed_at IS NOT NULL ORDER BY id").fetchall()

    # ---- bookings known to the cloud (so one missing there was deleted, not never pushed) -----------

    def mark_seen(self, booking_ids: list[str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO seen_in_cloud VALUES (?)", [(b,) for b in booking_ids])

    def was_seen(self, booking_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen_in_cloud WHERE booking_id = ?",
                                    (booking_id,)).fetchone() is not None

    def forget_seen(self, booking_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM seen_in_cloud WHERE booking_id = ?", (booking_id,))

    # ---- faults the drainer keeps retrying through (an alert for the operator) -------------------------

    def note_fault(self, name: str, message: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO cloud_faults VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                             " message = excluded.message, seen = excluded.seen", (name, message, now, now))

    def faults(self) -> list[CloudFault]:
        with self._lock:
            rows = self._db.execute("SELECT name, message, since, seen FROM cloud_faults ORDER BY since").fetchall()
        return [CloudFault(*row) for row in rows]

    def clear_faults(self, service: str, kinds: tuple[str, ...] | None = None) -> None:
        """After a success of `service`: its faults (only these kinds, e.g. a read proves the key, not that the
        database takes writes) are over. A read first, so a healthy device writes nothing here."""
        with self._lock:
            names = [n for (n,) in self._db.execute("SELECT name FROM cloud_faults WHERE name LIKE ?",
                                                     (f"{service}:%",)).fetchall()
                     if kinds is None or n.partition(":")[2] in kinds]
            if names:
                self._db.executemany("DELETE FROM cloud_faults WHERE name = ?", [(n,) for n in names])

    # ---- the drain lease -----------------------------------------------------------------------------

    def acquire_lease(self, holder: str, ttl_s: float, name: str = "drain") -> bool:
        """Take or renew; succeeds when free, expired, or already ours."""
        now = time.time()
        with write_tx(self._db, self._lock) as db:
            row = db.execute("SELECT holder, expires_at FROM lease WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now and _alive(row[0]):
                return False
            db.execute("INSERT OR REPLACE INTO lease VALUES (?, ?, ?)", (name, holder, now + ttl_s))
            return True

    def release_lease(self, holder: str, name: str = "drain") -> None:
        with self._lock:
            self._db.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (name, holder))
