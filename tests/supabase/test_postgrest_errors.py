"""PostgREST's statuses mean what src/PostgREST/Error.hs (mapSQLtoHTTP) says: a unique or foreign-key violation is a
permanent 409, a read-only database (25006, where Supabase puts a database over its size) a temporary 405, 08*/53*
503, 40*/57* 500, 401/403 the key or its privileges. A permanent conflict must not stall every later write, and one
on an idempotent upsert is looked at: the cloud already holding the same row settles it. Against the fake cloud,
which runs the writes in the real PostgreSQL (read-only mode: real read-only transactions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.models import BookingIn, Video, video_id_for
from shared.store.cloud.errors import CloudRejected, CloudUnavailable, classify_postgrest
from tests.supabase.conftest import drain
from tests.supabase.fakecloud import pg_body, pg_http_status, postgrest_fault

START = datetime(2030, 6, 1, 18, 0, tzinfo=UTC)
UNIQUE = ("23505", 'duplicate key value violates unique constraint "videos_pkey"')


@pytest.mark.parametrize(("sqlstate", "kind", "fault"), [
    ("23505", CloudRejected, None), ("23503", CloudRejected, None), ("23514", CloudRejected, None),
    ("25006", CloudUnavailable, "read_only"), ("08006", CloudUnavailable, None), ("53300", CloudUnavailable, None),
    ("40001", CloudUnavailable, None), ("57014", CloudUnavailable, None), ("42501", CloudUnavailable, "auth"),
    ("PGRST301", CloudUnavailable, "auth"), ("PGRST205", CloudUnavailable, "schema"),
    ("PGRST204", CloudUnavailable, "schema"), ("22P02", CloudRejected, None),
])
def test_postgrest_answers_are_classified_as_the_server_means_them(sqlstate, kind, fault):
    status = {"PGRST301": 401, "PGRST205": 404, "PGRST204": 400}.get(sqlstate) or pg_http_status(sqlstate)
    error = classify_postgrest(status, sqlstate, "op", detail=pg_body(sqlstate, "m")["message"])
    assert type(error) is kind and getattr(error, "fault", None) == fault
    if sqlstate in ("23505", "23503"):
        assert error.reason == "conflict"


def _booking(store, settings, booking_id: str, hours: int = 0) -> None:
    start = START + timedelta(hours=hours)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], settings.camera_id)


def _video(settings, booking_id: str, size: int = 1000) -> Video:
    return Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1", camera_id=settings.camera_id,
                 storage_path=f"u1/{booking_id}.mp4", size_bytes=size, duration_seconds=60.0, created_at=START,
                 uploaded_at=START)


def _in_cloud(db, booking_id: str) -> bool:
    return db.execute("SELECT 1 FROM bookings WHERE id = %s", (booking_id,)).fetchone() is not None


def _passes(store, n: int = 3) -> None:
    for _ in range(n):
        store.drainer.note_reachable()  # no waiting out the backoff in a test
        store.sync_now()


def test_a_read_only_database_is_a_fault_retried_not_a_refusal(store, cloud_settings, fake_cloud, db):
    fake_cloud.configure(read_only=True)
    _booking(store, cloud_settings, "r1")
    _passes(store)
    assert store.outbox.rejected() == [] and store.outbox.pending_count() == 1
    [fault] = store.outbox.faults()
    assert fault.name == "rest:read_only" and "405" in fault.message and "25006" in fault.message
    fake_cloud.configure(read_only=False)  # the operator freed space
    drain(store)
    assert _in_cloud(db, "r1") and store.outbox.faults() == []


def test_a_key_postgrest_refuses_is_a_fault(store, cloud_settings, fake_cloud, db):
    fake_cloud.inject({"method": "POST", "path": "^/rest/v1/bookings", "status": 401,
                       "body": {"message": "Invalid authentication credentials"}})
    _booking(store, cloud_settings, "k1")
    store.sync_now()
    assert [f.name for f in store.outbox.faults()] == ["rest:auth"] and store.outbox.rejected() == []
    drain(store)
    assert _in_cloud(db, "k1") and store.outbox.faults() == []


def test_a_permanent_conflict_is_refused_with_the_clouds_row_and_never_stalls_the_rest(
        store, cloud_settings, fake_cloud, db):
    _booking(store, cloud_settings, "c1")
    drain(store)
    theirs = _video(cloud_settings, "c1", size=999)
    db.execute("INSERT INTO videos (id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds)"
               " VALUES (%s, 'c1', 'u1', %s, 'u1/c1.mp4', 999, 60)", (theirs.id, cloud_settings.camera_id))
    fake_cloud.inject(postgrest_fault(*UNIQUE, method="POST", path="^/rest/v1/videos", count=None))
    store.upsert_video(_video(cloud_settings, "c1", size=1000))
    _booking(store, cloud_settings, "c2", hours=1)  # another booking's write, queued after
    _passes(store)
    assert _in_cloud(db, "c2"), "a permanent conflict must not hold the head of the drain"
    [(_, key, kind, error)] = store.outbox.rejected()
    assert (key, kind) == ("c1", "video_upsert")
    assert "409" in error and "23505" in error and '"size_bytes": 999' in error, "the cloud's row, for the operator"


def test_a_conflict_with_the_same_row_already_in_the_cloud_is_settled(store, cloud_settings, fake_cloud, db):
    _booking(store, cloud_settings, "s1")
    store.upsert_video(_video(cloud_settings, "s1"))
    drain(store)
    fake_cloud.inject(postgrest_fault(*UNIQUE, method="POST", path="^/rest/v1/videos", count=None))
    store.upsert_video(_video(cloud_settings, "s1"))  # written again (a retry after a crash): the same row
    drain(store)
    assert store.outbox.rejected() == [] and store.outbox.pending_count() == 0
    assert db.execute("SELECT size_bytes FROM videos WHERE booking_id = 's1'").fetchone() == (1000,)
