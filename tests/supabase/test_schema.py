"""supabase/migrations applied to a real PostgreSQL: constraints, triggers, grants and RLS policies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.types.json import Jsonb

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
T0, T1 = "2026-12-01T18:00:00Z", "2026-12-01T19:00:00Z"


@contextmanager
def as_role(db: psycopg.Connection, role: str, sub: str | None = None) -> Iterator[psycopg.Connection]:
    """What PostgREST does per request: switch role and expose the JWT claims to auth.uid()."""
    with db.transaction():
        db.execute(f"SET LOCAL ROLE {role}")
        claims = {"role": role, **({"sub": sub} if sub else {})}
        db.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield db


def _booking(db, booking_id: str, user: str, status: str = "confirmed") -> None:
    db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time, status)"
               " VALUES (%s, %s, 'cam1', %s, %s, %s)", (booking_id, user, T0, T1, status))


def _video(db, booking_id: str, user: str) -> None:
    db.execute("INSERT INTO videos (id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds)"
               " VALUES (%s, %s, %s, 'cam1', %s, 10, 1.5)", (str(uuid.uuid4()), booking_id, user,
                                                             f"{user}/{booking_id}.mp4"))


def test_the_server_under_test(pg_server):
    print(f"schema verified against {pg_server.describe()}")
    assert pg_server.port > 0


@pytest.mark.parametrize("sql, args", [
    ("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time, status) VALUES"
     " ('b1', 'u', 'cam1', %s, %s, 'recording')", (T0, T1)),
    ("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES ('b1', 'u', 'cam1', %s, %s)",
     (T1, T0)),
    ("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES ('../x', 'u', 'cam1', %s, %s)",
     (T0, T1)),
    ("INSERT INTO videos (id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds) VALUES"
     " (gen_random_uuid(), 'b1', 'u', 'cam1', 'someone-else/b1.mp4', 1, 1)", ()),
    ("INSERT INTO videos (id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds) VALUES"
     " (gen_random_uuid(), 'b1', 'u', 'cam1', 'u/b1.mp4', -1, 1)", ()),
    ("INSERT INTO user_settings (user_id, logo_path) VALUES ('u', 'v/media/logo.png')", ()),
    ("INSERT INTO user_settings (user_id, sponsor_logo_paths) VALUES ('u', %s)",
     (["u/media/a.png", "u/media/b.png", "u/media/c.png", "u/media/d.png"],)),
], ids=["unknown-status", "end-before-start", "path-in-id", "video-path-of-other-user", "negative-size",
        "logo-of-other-user", "four-sponsors"])
def test_check_constraints_refuse_bad_rows(db, sql, args):
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(sql, args)


def test_a_second_videos_row_for_a_booking_is_refused(db):
    _video(db, "b1", "u")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _video(db, "b1", "u")


def test_updated_at_moves_only_when_the_row_changes(db):
    _booking(db, "b1", "u")
    db.execute("UPDATE bookings SET updated_at = '2000-01-01Z' WHERE id = 'b1'")  # a no-op for the content
    (stamp,) = db.execute("SELECT updated_at FROM bookings WHERE id = 'b1'").fetchone()
    assert stamp.year != 2000
    db.execute("UPDATE bookings SET status = 'completed' WHERE id = 'b1'")
    (later,) = db.execute("SELECT updated_at FROM bookings WHERE id = 'b1'").fetchone()
    assert later >= stamp
    db.execute("UPDATE bookings SET status = status WHERE id = 'b1'")
    (same,) = db.execute("SELECT updated_at FROM bookings WHERE id = 'b1'").fetchone()
    assert same == later


def test_a_status_never_moves_backwards(db):
    _booking(db, "b1", "u", status="video_uploaded")
    db.execute("UPDATE bookings SET status = 'completed', end_time = '2026-12-01T19:30:00Z' WHERE id = 'b1'")
    status, end = db.execute("SELECT status, end_time FROM bookings WHERE id = 'b1'").fetchone()
    assert status == "video_uploaded"  # the late status is ignored ...
    assert end.isoformat().startswith("2026-12-01T19:30")  # ... the rest of the update still applies
    db.execute("UPDATE bookings SET status = 'video_processed' WHERE id = 'b1'")
    assert db.execute("SELECT status FROM bookings WHERE id = 'b1'").fetchone()[0] == "video_uploaded"


def test_missed_sits_between_confirmed_and_completed(db):
    """`missed` (with its reason) follows `confirmed`; a late recording still completes it, clearing the
    reason; nothing recorded can go back to missed; only a missed booking has a reason."""
    _booking(db, "m1", "u")
    db.execute("UPDATE bookings SET status = 'missed', status_reason = 'recorder_offline: down' WHERE id = 'm1'")
    assert db.execute("SELECT status, status_reason FROM bookings WHERE id = 'm1'").fetchone() == (
        "missed", "recorder_offline: down")
    db.execute("UPDATE bookings SET status = 'completed' WHERE id = 'm1'")
    assert db.execute("SELECT status, status_reason FROM bookings WHERE id = 'm1'").fetchone() == ("completed", None)
    db.execute("UPDATE bookings SET status = 'missed', status_reason = 'late check' WHERE id = 'm1'")
    assert db.execute("SELECT status, status_reason FROM bookings WHERE id = 'm1'").fetchone() == ("completed", None)
    _booking(db, "m2", "u")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE bookings SET status = 'missed', status_reason = %s WHERE id = 'm2'", ("x" * 301,))


def test_a_reason_belongs_to_a_missed_booking_only(db):
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time, status, status_reason)"
                   " VALUES ('r1', 'u', 'cam1', %s, %s, 'confirmed', 'why')", (T0, T1))


def test_users_read_only_their_own_rows(db):
    for booking_id, user in (("a1", ALICE), ("b1", BOB)):
        _booking(db, booking_id, user)
        _video(db, booking_id, user)
    db.execute("INSERT INTO user_settings (user_id) VALUES (%s), (%s)", (ALICE, BOB))
    with as_role(db, "authenticated", ALICE):
        assert db.execute("SELECT booking_id FROM videos").fetchall() == [("a1",)]
        assert db.execute("SELECT id FROM bookings").fetchall() == [("a1",)]
        assert db.execute("SELECT user_id FROM user_settings").fetchall() == [(ALICE,)]
        assert db.execute("SELECT count(*) FROM videos WHERE user_id = %s", (BOB,)).fetchone() == (0,)
    with as_role(db, "anon"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM videos")
    with as_role(db, "service_role"):
        assert db.execute("SELECT count(*) FROM videos").fetchone() == (2,)


@pytest.mark.parametrize("statement", [
    "INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES ('x', '{me}', 'cam1', "
    f"'{T0}', '{T1}')",
    "UPDATE bookings SET status = 'video_uploaded' WHERE user_id = '{me}'",
    "DELETE FROM videos WHERE user_id = '{me}'",
    "INSERT INTO user_settings (user_id) VALUES ('{me}')",
    "SELECT * FROM system_status",
])
def test_users_cannot_write_or_read_device_tables(db, statement):
    _booking(db, "a1", ALICE)
    with as_role(db, "authenticated", ALICE), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(statement.format(me=ALICE))


def test_the_service_role_writes(db):
    with as_role(db, "service_role"):
        _booking(db, "s1", ALICE)
        db.execute("UPDATE bookings SET status = 'completed' WHERE id = 's1'")
        _video(db, "s1", ALICE)
        db.execute("INSERT INTO system_status (camera_id, collected_at, snapshot) VALUES ('cam1', now(), '{}')")
        db.execute("INSERT INTO system_status_history (camera_id, collected_at, snapshot) VALUES ('cam1', now(), '{}')")
    assert db.execute("SELECT status FROM bookings WHERE id = 's1'").fetchone() == ("completed",)


def test_storage_buckets_are_private_and_typed(db):
    rows = dict(db.execute("SELECT id, public FROM storage.buckets WHERE id IN ('videos', 'media')").fetchall())
    assert rows == {"videos": False, "media": False}
    (videos_types,) = db.execute("SELECT allowed_mime_types FROM storage.buckets WHERE id = 'videos'").fetchone()
    assert videos_types == ["video/mp4"]  # an upload left at the client's text/plain default is refused


def test_storage_objects_are_readable_by_their_owner_only(db):
    db.execute("INSERT INTO storage.objects (bucket_id, name) VALUES ('videos', %s), ('videos', %s),"
               " ('media', %s), ('media', %s)",
               (f"{ALICE}/a1.mp4", f"{BOB}/b1.mp4", f"{ALICE}/media/logo-0123456789abcdef.png",
                f"{ALICE}/elsewhere/x.png"))
    with as_role(db, "authenticated", ALICE):
        names = sorted(r[0] for r in db.execute("SELECT name FROM storage.objects").fetchall())
        assert names == [f"{ALICE}/a1.mp4", f"{ALICE}/media/logo-0123456789abcdef.png"]
    with as_role(db, "authenticated", BOB):
        assert db.execute("SELECT name FROM storage.objects").fetchall() == [(f"{BOB}/b1.mp4",)]
    with as_role(db, "anon"):
        assert db.execute("SELECT name FROM storage.objects").fetchall() == []


def test_migrations_apply_twice(cloud_dsn):
    from tests.supabase.pg import MIGRATIONS

    with psycopg.connect(cloud_dsn, autocommit=True) as conn:
        for migration in MIGRATIONS:
            conn.execute(migration.read_text())


_TL = {"corner": "top-left", "width_fraction": 0.15, "margin_fraction": 0.02}


@pytest.mark.parametrize("logo, sponsors", [
    ({**_TL, "corner": "middle"}, []),
    ({**_TL, "width_fraction": 0.01}, []),
    ({**_TL, "width_fraction": 0.6}, []),
    ({**_TL, "margin_fraction": -0.1}, []),
    ({**_TL, "margin_fraction": 0.3}, []),
    ({**_TL, "width_fraction": "0.2"}, []),
    ({**_TL, "size": 2}, []),
    ({"corner": "top-left"}, []),
    ("top-left", []),
    (_TL, [{**_TL, "corner": "top-right"}, _TL]),
    (None, [_TL, None, _TL]),
    (None, [None, None, None, None]),
    (None, {"0": _TL}),
    (None, [{**_TL, "width_fraction": 0.9}]),
], ids=["unknown-corner", "too-narrow", "too-wide", "negative-margin", "margin-too-big", "width-as-text",
        "unknown-key", "missing-sizes", "not-an-object", "logo-and-sponsor-share-a-corner", "sponsors-share-a-corner",
        "four-sponsor-placements", "sponsors-not-a-list", "sponsor-too-wide"])
def test_bad_logo_placements_are_refused(db, logo, sponsors):
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO user_settings (user_id, logo_placement, sponsor_logo_placements) VALUES ('u', %s, %s)",
                   (Jsonb(logo) if logo is not None else None, Jsonb(sponsors)))


def test_logo_placements_are_stored_and_default_to_none(db):
    db.execute("INSERT INTO user_settings (user_id) VALUES ('a')")
    sponsors = [None, {**_TL, "corner": "bottom-right", "width_fraction": 0.5, "margin_fraction": 0}]
    db.execute("INSERT INTO user_settings (user_id, logo_placement, sponsor_logo_placements) VALUES ('b', %s, %s)",
               (Jsonb({**_TL, "width_fraction": 0.02, "margin_fraction": 0.2}), Jsonb(sponsors)))
    db.execute("INSERT INTO user_settings (user_id, logo_placement) VALUES ('c', 'null'::jsonb)")
    rows = db.execute("SELECT user_id, logo_placement, sponsor_logo_placements FROM user_settings"
                      " ORDER BY 1").fetchall()
    assert rows == [("a", None, []), ("b", {**_TL, "width_fraction": 0.02, "margin_fraction": 0.2}, sponsors),
                    ("c", None, [])]
