from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.models import BookingIn
from shared.schedule_cache import SCHEMA, CacheFormatError, read_cache, write_snapshot
from shared.store import LocalStore


def _payload(**overrides: object) -> dict:
    base = {"id": "b1", "user_id": "u1", "start_time": "2026-11-25T18:00:00Z", "end_time": "2026-11-25T19:00:00Z"}
    return {**base, **overrides}


def test_naive_timestamps_are_rejected():
    with pytest.raises(ValidationError, match="timezone"):
        BookingIn.model_validate(_payload(start_time="2026-11-25T18:00:00"))


def test_offsets_are_normalised_to_utc():
    booking = BookingIn.model_validate(_payload(start_time="2026-11-25T20:00:00+02:00"))
    assert booking.start_time == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    assert booking.start_time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "", "x" * 65, "a b"])
def test_ids_with_path_characters_are_rejected(bad_id):
    with pytest.raises(ValidationError):
        BookingIn.model_validate(_payload(id=bad_id))


def test_end_must_follow_start():
    with pytest.raises(ValidationError, match="end_time must be after start_time"):
        BookingIn.model_validate(_payload(end_time="2026-11-25T18:00:00Z"))


def test_cache_file_has_one_versioned_schema(tmp_path):
    store = LocalStore(tmp_path)
    store.create_bookings([BookingIn.model_validate(_payload(end_time="2099-01-01T00:00:00Z"))], "cam1")
    path = tmp_path / "bookings.json"
    first = write_snapshot(path, "cam1", store.list_bookings())
    second = write_snapshot(path, "cam1", store.list_bookings())
    assert second.revision > first.revision
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and isinstance(data["bookings"], list)
    assert read_cache(path).bookings[0].id == "b1"
    path.write_text(json.dumps([{"id": "b1"}]))  # the old "list one week, dict the next" failure
    with pytest.raises(CacheFormatError, match="schema"):
        read_cache(path)


def test_concurrent_cache_writers_never_leave_a_torn_file_or_a_lower_revision(tmp_path):
    """The API writes bookings.json from several threads (and the cloud sync from another process): the lock
    serialises them, so every write sees the one before and readers only ever see a whole file."""
    path = tmp_path / "bookings.json"
    bookings = [BookingIn(id=f"b{i}", user_id="u1", start_time=datetime(2026, 1, 1, 10, tzinfo=UTC),
                          end_time=datetime(2026, 1, 1, 11, tzinfo=UTC)) for i in range(3)]
    store = LocalStore(tmp_path / "data")
    stored = [b for b, _ in store.create_bookings(bookings[:1], "cam1")]
    revisions: list[int] = []
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            snapshot = read_cache(path)  # raises on a torn file
            if snapshot is not None:
                seen.append(snapshot.revision)

    def writer() -> None:
        for _ in range(40):
            revisions.append(write_snapshot(path, "cam1", stored).revision)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    store.close()
    assert len(set(revisions)) == 160, "two writers never produced the same revision (each saw the last)"
    assert read_cache(path).revision == max(revisions)
    assert seen == sorted(seen), "a reader never sees the revision go backwards"
