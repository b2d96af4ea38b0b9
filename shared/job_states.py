"""The worker's job table as other services read it: its file name and the states a booking's job goes through.

The worker owns the table (services/video_worker/job_table.py writes it); the status service only reads it, through
job_states, so both name the file and the states from here.
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum
from pathlib import Path

TABLE_FILE = "worker-jobs.db"
"""In DATA_DIR/state: one table for every worker on the device (and read by the status service)."""


class JobState(StrEnum):
    pending = "pending"  # the video waits to be made
    processed = "processed"  # output written; waits to be uploaded
    done = "done"  # uploaded and the videos row written
    failed = "failed"  # the recording itself is unreadable: kept for a human


def job_states(path: Path) -> dict[str, JobState] | None:
    """Every booking's job state, read without writing (the status service is another process).
    None when there is no table to read (no worker has run on this DATA_DIR) or it cannot be read now."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT booking_id, state FROM jobs").fetchall()
        finally:
            db.close()
        return {booking_id: JobState(state) for booking_id, state in rows}
    except (sqlite3.Error, ValueError):
        return None
