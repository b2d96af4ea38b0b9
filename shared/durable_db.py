"""The SQLite connection behind every durable queue (MQTT outbox, cloud outbox, worker jobs)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_durable_db(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """One connection shared by a component's threads (the caller serialises them with its own lock).

    WAL so other processes read while one writes; synchronous=FULL because a row these queues
    acknowledge must survive a power cut; autocommit, so transactions are explicit; `timeout_s` is
    how long a write waits for another process's lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_s)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
