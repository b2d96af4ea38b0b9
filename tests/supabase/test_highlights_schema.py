"""The highlights migration on a real PostgreSQL: many highlight rows per booking, still one full video, paths in
the owner's folder, and the same row-level security as full videos."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.supabase.test_schema import ALICE, BOB, as_role


def _row(db, booking_id: str, user: str, kind: str, path: str) -> None:
    db.execute("INSERT INTO videos (id, kind, booking_id, user_id, camera_id, storage_path, size_bytes,"
               " duration_seconds) VALUES (%s, %s, %s, %s, 'cam1', %s, 10, 1.5)",
               (str(uuid.uuid4()), kind, booking_id, user, path))


def test_a_booking_has_one_full_video_and_any_number_of_highlights(db):
    _row(db, "b1", "u", "full", "u/b1.mp4")
    for n in range(3):
        _row(db, "b1", "u", "highlight", f"u/highlights/b1/h{n}.mp4")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _row(db, "b1", "u", "full", "u/b1.mp4")
    assert db.execute("SELECT kind, count(*) FROM videos GROUP BY kind ORDER BY kind").fetchall() == [
        ("full", 1), ("highlight", 3)]


def test_rows_written_before_the_migration_are_full_videos(db):
    db.execute("INSERT INTO videos (id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds)"
               " VALUES (gen_random_uuid(), 'old', 'u', 'cam1', 'u/old.mp4', 1, 1)")
    assert db.execute("SELECT kind FROM videos WHERE booking_id = 'old'").fetchone() == ("full",)


@pytest.mark.parametrize("kind, path", [
    ("highlight", "u/b1.mp4"),  # a highlight posing as the full video
    ("highlight", "other/highlights/b1/h1.mp4"),  # in another user's folder
    ("highlight", "u/highlights/b2/h1.mp4"),  # under another booking
    ("highlight", "u/highlights/b1/../h1.mp4"),
    ("full", "u/highlights/b1/h1.mp4"),
    ("teaser", "u/b1.mp4"),
])
def test_highlight_rows_must_live_in_their_owners_booking_folder(db, kind, path):
    with pytest.raises(psycopg.errors.CheckViolation):
        _row(db, "b1", "u", kind, path)


def test_users_read_only_their_own_highlights(db):
    for booking_id, user in (("a1", ALICE), ("b1", BOB)):
        _row(db, booking_id, user, "full", f"{user}/{booking_id}.mp4")
        _row(db, booking_id, user, "highlight", f"{user}/highlights/{booking_id}/h1.mp4")
    with as_role(db, "authenticated", ALICE):
        rows = db.execute("SELECT booking_id, kind FROM videos ORDER BY kind").fetchall()
        assert rows == [("a1", "full"), ("a1", "highlight")]
    with as_role(db, "authenticated", ALICE), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM videos WHERE kind = 'highlight'")
    with as_role(db, "anon"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM videos")
    db.execute("INSERT INTO storage.objects (bucket_id, name) VALUES ('videos', %s), ('videos', %s)",
               (f"{ALICE}/highlights/a1/h1.mp4", f"{BOB}/highlights/b1/h1.mp4"))
    with as_role(db, "authenticated", ALICE):
        assert db.execute("SELECT name FROM storage.objects").fetchall() == [(f"{ALICE}/highlights/a1/h1.mp4",)]


def test_upsert_on_the_id_is_idempotent_for_both_kinds(db):
    """What the device's PostgREST upsert (on_conflict=id) runs."""
    for kind, path in (("full", "u/b1.mp4"), ("highlight", "u/highlights/b1/h1.mp4")):
        vid = str(uuid.uuid4())
        for size in (10, 20):
            db.execute("INSERT INTO videos (id, kind, booking_id, user_id, camera_id, storage_path, size_bytes,"
                       " duration_seconds) VALUES (%s, %s, 'b1', 'u', 'cam1', %s, %s, 1)"
                       " ON CONFLICT (id) DO UPDATE SET size_bytes = excluded.size_bytes", (vid, kind, path, size))
        assert db.execute("SELECT size_bytes FROM videos WHERE id = %s", (vid,)).fetchone() == (20,)
