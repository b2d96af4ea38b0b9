"""The SQLite connection behind every durable queue (MQTT outbox, cloud outbox, worker jobs)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

WAL_RETRY_S = 0.05


def enable_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL, waiting out other processes doing the same.

    Services start together (`ezrec up`, compose), and several may open a new database file at once;
    the journal-mode switch then fails with "database is locked" at once instead of waiting for the busy
    timeout, so it is retried here until `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


def open_durable_db(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """One connection shared by a component's threads (the caller serialises them with its own lock).

    WAL so other processes read while one writes; synchronous=FULL because a row these queues
    acknowledge must survive a power cut; autocommit, so transactions are explicit; `timeout_s` is
    how long a write waits for another process's lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_s)
    enable_wal(db, timeout_s)
    db.execute("PRAGMA synchronous=FULL")
    return db


@contextmanager
def write_tx(db: sqlite3.Connection, lock: threading.Lock | None = None) -> Iterator[sqlite3.Connection]:
    """A write transaction taken up front (BEGIN IMMEDIATE): what it reads cannot change before it writes, even
    with other processes on the file; committed on leaving, rolled back on any exception. `lock` serialises the
    threads sharing the connection."""
    with lock if lock is not None else nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
