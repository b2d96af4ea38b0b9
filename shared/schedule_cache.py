"""DATA_DIR/bookings.json: the device's schedule, the recorder's source of truth when offline.

One versioned schema (`ezrec.bookings/1`): the ScheduleSnapshot payload plus a schema tag.
An older system changed this file's shape between releases and crashed its readers; a file
with an unknown schema is refused loudly, never guessed at.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from shared.atomic import write_text_atomic
from shared.models import Booking
from shared.payloads import ScheduledBooking, ScheduleSnapshot
from shared.schedule_revision import next_revision
from shared.timeutil import utc_now

log = logging.getLogger(__name__)

SCHEMA = "ezrec.bookings/1"
KEEP_PAST = timedelta(hours=1)
"""Bookings that ended within this window stay in the snapshot, so a restarted recorder still sees them."""


class CacheFormatError(Exception):
    pass


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_cache(path: Path) -> ScheduleSnapshot | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheFormatError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CacheFormatError(f"{path} has schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                               f"expected {SCHEMA!r}")
    try:
        return ScheduleSnapshot.model_validate({k: v for k, v in data.items() if k != "schema"})
    except ValidationError as exc:
        raise CacheFormatError(f"{path} does not match {SCHEMA}: {exc}") from exc


def build_snapshot(camera_id: str, bookings: list[Booking], revision: int) -> ScheduleSnapshot:
    cutoff = utc_now() - KEEP_PAST
    return ScheduleSnapshot(
        camera_id=camera_id,
        revision=revision,
        bookings=[
            ScheduledBooking(id=b.id, user_id=b.user_id, start_time=b.start_time, end_time=b.end_time,
                             status=b.status)
            for b in bookings
            if b.camera_id == camera_id and b.end_time > cutoff
        ],
    )


def write_snapshot(path: Path, camera_id: str, bookings: list[Booking]) -> ScheduleSnapshot:
    """Write the next revision atomically under a lock (shared/schedule_revision.py: the clock, above the
    previous one, unless that one is implausibly far ahead of the clock)."""
    with _locked(path):
        previous = None
        try:
            old = read_cache(path)
            previous = old.revision if old else None
        except CacheFormatError as exc:
            log.warning("replacing unreadable schedule cache: %s", exc)
        revision, restarted = next_revision(previous)
        if restarted:
            log.warning("schedule cache %s: %s", path, restarted)
        snapshot = build_snapshot(camera_id, bookings, revision)
        data = {"schema": SCHEMA, **json.loads(snapshot.model_dump_json())}
        write_text_atomic(path, json.dumps(data, indent=1))
    return snapshot
