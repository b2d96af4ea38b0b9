"""LocalStore: the embedded default that runs the whole job without a cloud."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.atomic import remove_stale_temps
from shared.models import BookingIn, BookingStatus, LogoPlacement, UserSettings, Video, video_id_for
from shared.store import BookingConflict, LocalStore, NotFound

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def _b(booking_id: str, start_min: int, minutes: int = 60, user: str = "u1", camera: str | None = None) -> BookingIn:
    return BookingIn(id=booking_id, user_id=user, camera_id=camera,
                     start_time=T0 + timedelta(minutes=start_min),
                     end_time=T0 + timedelta(minutes=start_min + minutes))


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path)
    yield s
    s.close()


def test_create_is_idempotent_and_conflicts_are_refused(store):
    [(first, created)] = store.create_bookings([_b("a", 0)], "cam1")
    assert created and first.status == BookingStatus.confirmed and first.camera_id == "cam1"
    [(again, created)] = store.create_bookings([_b("a", 0)], "cam1")
    assert not created and again == first
    with pytest.raises(BookingConflict) as same_id:
        store.create_bookings([_b("a", 5)], "cam1")
    assert same_id.value.conflicting_id == "a"
    with pytest.raises(BookingConflict) as overlap:
        store.create_bookings([_b("b", 30)], "cam1")
    assert overlap.value.conflicting_id == "a"


def test_back_to_back_and_other_camera_do_not_overlap(store):
    store.create_bookings([_b("a", 0)], "cam1")
    store.create_bookings([_b("b", 60), _b("c", 0, camera="cam2")], "cam1")
    assert [b.id for b in store.list_bookings(camera_id="cam1")] == ["a", "b"]


def test_batch_is_all_or_nothing(store):
    with pytest.raises(BookingConflict):
        store.create_bookings([_b("a", 0), _b("b", 30)], "cam1")
    assert store.list_bookings() == []


def test_status_only_moves_forward(store):
    store.create_bookings([_b("a", 0)], "cam1")
    assert store.advance_booking_status("a", BookingStatus.video_uploaded).status == BookingStatus.video_uploaded
    # a late `completed` (replayed event, slow process) must not undo the upload
    assert store.advance_booking_status("a", BookingStatus.completed).status == BookingStatus.video_uploaded
    assert store.advance_booking_status("missing", BookingStatus.completed) is None


def test_missed_sits_between_confirmed_and_completed(store):
    """A slot that passed unrecorded is `missed` with its reason; a recording that finishes after the check
    still completes it (and the reason goes), but nothing recorded can ever become missed."""
    store.create_bookings([_b("a", 0), _b("b", 60)], "cam1")
    missed = store.advance_booking_status("a", BookingStatus.missed, reason="recorder_offline: not running")
    assert missed.status == BookingStatus.missed and missed.status_reason == "recorder_offline: not running"
    assert [b.id for b in store.list_bookings(status=BookingStatus.missed)] == ["a"]
    late = store.advance_booking_status("a", BookingStatus.completed)
    assert late.status == BookingStatus.completed and late.status_reason is None
    assert store.advance_booking_status("a", BookingStatus.missed, reason="x").status == BookingStatus.completed
    assert store.get_booking("a").status_reason is None
    # a reason belongs to `missed` only
    assert store.advance_booking_status("b", BookingStatus.completed, reason="ignored").status_reason is None


def test_a_store_made_before_missed_existed_is_migrated_in_place(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "ezrec.sqlite3")
    db.executescript("""
        CREATE TABLE bookings (
            id TEXT PRIMARY KEY, user_id TEXT NOT NULL, camera_id TEXT NOT NULL,
            start_time TEXT NOT NULL, end_time TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('confirmed','completed','video_processed','video_uploaded')),
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL, CHECK (end_time > start_time));
        INSERT INTO bookings VALUES ('old', 'u1', 'cam1', '2026-11-25T18:00:00.000000Z', '2026-11-25T19:00:00.000000Z',
                                     'video_uploaded', '2026-11-20T10:00:00.000000Z', '2026-11-25T19:05:00.000000Z');
        INSERT INTO bookings VALUES ('gone', 'u1', 'cam1', '2026-11-25T20:00:00.000000Z', '2026-11-25T21:00:00.000000Z',
                                     'confirmed', '2026-11-20T10:00:00.000000Z', '2026-11-20T10:00:00.000000Z');
    """)
    db.close()
    store, again = LocalStore(tmp_path), LocalStore(tmp_path)  # a second process opening it meanwhile
    try:
        old = store.get_booking("old")
        assert old.status == BookingStatus.video_uploaded and old.updated_at.day == 25
        assert again.advance_booking_status("gone", BookingStatus.missed, reason="no_recording: nothing").status \
            == BookingStatus.missed
        assert store.get_booking("gone").status_reason == "no_recording: nothing"
        store.create_bookings([_b("new", 600)], "cam1")
        assert store.get_booking("new").status == BookingStatus.confirmed
    finally:
        store.close()
        again.close()


def test_logo_placements_are_stored_and_a_store_made_before_them_gains_the_columns(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "ezrec.sqlite3")
    db.executescript("""
        CREATE TABLE user_settings (
            user_id TEXT PRIMARY KEY, intro_video_path TEXT, logo_path TEXT,
            sponsor_logo_paths TEXT NOT NULL DEFAULT '[]', updated_at TEXT NOT NULL);
        INSERT INTO user_settings VALUES ('u1', NULL, 'u1/media/logo.png', '["u1/media/s.png"]',
                                          '2026-11-20T10:00:00.000000Z');
    """)
    db.close()
    store = LocalStore(tmp_path)
    try:
        old = store.get_user_settings("u1")
        assert old.logo_path == "u1/media/logo.png" and old.logo_placement is None
        assert old.sponsor_logo_placements == []
        placed = LogoPlacement(corner="bottom-left", width_fraction=0.3, margin_fraction=0.0)
        sponsor = LogoPlacement(corner="top-left", width_fraction=0.1)
        store.put_user_settings(old.model_copy(update={"logo_placement": placed,
                                                       "sponsor_logo_placements": [sponsor]}))
        again = LocalStore(tmp_path)
        got = again.get_user_settings("u1")
        again.close()
        assert (got.logo_placement, got.sponsor_logo_placements) == (placed, [sponsor])
        assert got.sponsor_logo_paths == ["u1/media/s.png"]
        store.put_user_settings(UserSettings(user_id="u1", sponsor_logo_placements=[None, sponsor]))
        cleared = store.get_user_settings("u1")
        assert (cleared.logo_placement, cleared.sponsor_logo_placements) == (None, [None, sponsor])
    finally:
        store.close()


def test_list_filters(store):
    store.create_bookings([_b("a", 0), _b("b", 120, user="u2")], "cam1")
    store.advance_booking_status("b", BookingStatus.completed)
    assert [b.id for b in store.list_bookings(user_id="u2")] == ["b"]
    assert [b.id for b in store.list_bookings(status=BookingStatus.confirmed)] == ["a"]
    assert [b.id for b in store.list_bookings(ends_after=T0 + timedelta(minutes=90))] == ["b"]
    assert [b.id for b in store.list_bookings(starts_before=T0 + timedelta(minutes=90))] == ["a"]


def test_video_upsert_never_duplicates(store, tmp_path):
    video = Video(id=video_id_for("a"), booking_id="a", user_id="u1", camera_id="cam1",
                  storage_path="u1/a.mp4", size_bytes=10, duration_seconds=5.0)
    store.upsert_video(video)
    store.upsert_video(video.model_copy(update={"size_bytes": 20}))
    videos = store.list_videos(booking_id="a")
    assert len(videos) == 1 and videos[0].size_bytes == 20


def test_objects_round_trip_and_paths_cannot_escape(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    info = store.put_object("videos", "u1/a.mp4", src, "video/mp4")
    assert info.size_bytes == 5 and store.object_exists("videos", "u1/a.mp4")
    out = store.get_object("videos", "u1/a.mp4", tmp_path / "out" / "a.mp4")
    assert out.read_bytes() == b"hello"
    for bad in ("../x", "u1/../../x", "/etc/passwd", "u1//a", ""):
        with pytest.raises(ValueError):
            store.put_object("videos", bad, src, "video/mp4")
    with pytest.raises(ValueError):
        store.put_object("secrets", "u1/a.mp4", src, "video/mp4")
    with pytest.raises(NotFound):
        store.get_object("videos", "u1/none.mp4", tmp_path / "none")


def test_second_process_sees_writes(tmp_path):
    """Four services share the SQLite file: WAL lets them read while one writes."""
    a, b = LocalStore(tmp_path), LocalStore(tmp_path)
    a.create_bookings([_b("a", 0)], "cam1")
    b.advance_booking_status("a", BookingStatus.completed)
    assert a.get_booking("a").status == BookingStatus.completed


def test_a_put_killed_mid_write_leaves_no_temp_behind_after_restart(tmp_path, monkeypatch):
    """kill -9 between the temp link and the rename: the next start sweeps the temp, keeps every object."""
    store = LocalStore(tmp_path / "data")
    src = tmp_path / "video.mp4"
    src.write_bytes(b"\x00" * 4096)
    store.put_object("videos", "u1/kept.mp4", src, "video/mp4")
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import shared.spliced_file as spliced_file\n"
        "import shared.store.local as local\n"
        "def die(*_a):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "spliced_file.os.replace = die\n"  # the line after the temp is written: the rename
        "local.LocalStore(Path(sys.argv[1])).put_object('videos', 'u1/b.mp4', Path(sys.argv[2]), 'video/mp4')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data"), str(src)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    temps = list((tmp_path / "data" / "files" / "videos" / "u1").glob(".*.tmp"))
    assert len(temps) == 1 and temps[0].samefile(src)  # a hard link: it would pin the video's bytes

    LocalStore(tmp_path / "data").close()  # a restart right away: the temp could be a live writer's
    assert temps[0].exists()
    monkeypatch.setattr("shared.store.local.STALE_TEMP_S", -1.0)  # ... and one after the hour has passed
    LocalStore(tmp_path / "data").close()
    assert not temps[0].exists()
    assert store.object_exists("videos", "u1/kept.mp4") and src.exists()
    assert not store.object_exists("videos", "u1/b.mp4")


def test_stale_temps_are_judged_by_their_last_change_not_their_content_age(tmp_path):
    old = time.time() - 7200
    (tmp_path / "sub").mkdir()
    dead = tmp_path / "sub" / ".a.mp4.x1.tmp"
    dead.write_bytes(b"x")
    finished = tmp_path / "finished.mp4"
    finished.write_bytes(b"y")
    os.utime(finished, (old, old))
    fresh_link = tmp_path / ".b.mp4.x2.tmp"
    os.link(finished, fresh_link)  # linking a two-hour-old file: old mtime, new ctime
    (tmp_path / ".dir.tmp").mkdir()

    assert remove_stale_temps(tmp_path, ("**/.*.tmp",), 3600) == []
    assert sorted(remove_stale_temps(tmp_path, ("**/.*.tmp",), -1.0)) == sorted([dead, fresh_link])
    assert not dead.exists() and not fresh_link.exists()
    assert finished.exists() and (tmp_path / ".dir.tmp").is_dir()
