"""A durable, ordered queue of MQTT publishes that survives broker outages and process crashes.

paho keeps unacknowledged QoS 1 messages in memory only; this file is what makes
"published" mean "will reach the broker eventually" across a kill -9.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from shared.durable_db import open_durable_db


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_durable_db(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
            " failed TEXT DEFAULT NULL)"
        )

    def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, int(retain)),
            )
            return int(cur.lastrowid or 0)

    def pending_after(self, last_id: int, limit: int = 100) -> list[OutboxRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? AND failed IS NULL"
                " ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()
        return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def done(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def fail(self, row_id: int, reason: str) -> None:
        """Kept, not deleted: a refused message is evidence, and an operator may replay it."""
        with self._lock:
            self._db.execute("UPDATE outbox SET failed = ? WHERE id = ?", (reason, row_id))

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox WHERE failed IS NULL").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
