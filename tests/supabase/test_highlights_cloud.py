"""Highlights through the Supabase store, against the fake project on the real PostgreSQL with every migration:
the object and the `videos` row of kind `highlight` land beside the booking's full video, retries never duplicate,
and a project without the highlights migration holds highlight rows back without holding back the full video."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.models import BookingIn, Video, highlight_video_id, storage_path_for_highlight, video_id_for
from tests.supabase.conftest import drain

START = datetime(2030, 5, 1, 18, 0, tzinfo=UTC)


def _full(settings) -> Video:
    return Video(id=video_id_for("b1"), booking_id="b1", user_id="u1", camera_id=settings.camera_id,
                 storage_path="u1/b1.mp4", size_bytes=4, duration_seconds=60.0, uploaded_at=START)


def _highlight(settings, clip: str) -> Video:
    return Video(id=highlight_video_id("b1", clip), kind="highlight", booking_id="b1", user_id="u1",
                 camera_id=settings.camera_id, storage_path=storage_path_for_highlight("u1", "b1", clip),
                 size_bytes=4, duration_seconds=33.0, uploaded_at=START)


def test_highlights_reach_the_cloud_beside_the_full_video(store, cloud_settings, fake_cloud, db, tmp_path):
    store.create_bookings([BookingIn(id="b1", user_id="u1", start_time=START, end_time=START + timedelta(hours=1))],
                          cloud_settings.camera_id)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom")
    for name in ("h1", "h2"):
        store.put_object("videos", storage_path_for_highlight("u1", "b1", name), clip, "video/mp4")
        store.upsert_video(_highlight(cloud_settings, name))
    store.upsert_video(_highlight(cloud_settings, "h1"))  # a retry after a crash
    store.upsert_video(_full(cloud_settings))
    drain(store)
    rows = db.execute("SELECT kind, storage_path FROM videos WHERE booking_id = 'b1' ORDER BY kind, storage_path")
    assert rows.fetchall() == [("full", "u1/b1.mp4"), ("highlight", "u1/highlights/b1/h1.mp4"),
                               ("highlight", "u1/highlights/b1/h2.mp4")]
    names = {r[0] for r in db.execute("SELECT name FROM storage.objects WHERE bucket_id = 'videos'").fetchall()}
    assert names == {"u1/highlights/b1/h1.mp4", "u1/highlights/b1/h2.mp4"}
    posts = [e for e in fake_cloud.requests() if e["path"] == "/rest/v1/videos"]
    assert {e["body"].get("kind") for e in posts} == {"highlight", None}  # kind is sent for highlights only


def test_before_the_migration_highlight_rows_wait_and_nothing_is_lost(store, cloud_settings, db):
    """A device updated before its project: the highlight row meets a schema fault (retried, alerted as
    cloud_fault:rest:schema) and the writes queued after it wait; once the migration is applied all land."""
    from tests.supabase.pg import MIGRATIONS

    db.execute("DROP INDEX IF EXISTS videos_one_full_per_booking; DROP INDEX IF EXISTS videos_booking_kind;"
               " ALTER TABLE videos DROP CONSTRAINT videos_storage_path; ALTER TABLE videos DROP COLUMN kind;"
               " ALTER TABLE videos ADD CONSTRAINT videos_booking_id_key UNIQUE (booking_id);"
               " ALTER TABLE videos ADD CONSTRAINT videos_storage_path CHECK"
               " (storage_path = user_id || '/' || booking_id || '.mp4')")
    try:
        store.upsert_video(_highlight(cloud_settings, "h1"))
        store.upsert_video(_full(cloud_settings))
        for _ in range(3):
            store.sync_now()
        assert db.execute("SELECT count(*) FROM videos").fetchone() == (0,)
        assert store.outbox.pending_count() == 2
        assert any("schema" in p.id for p in store.cloud_problems() or [])
    finally:
        for migration in MIGRATIONS:
            db.execute(migration.read_text())
    drain(store)
    rows = db.execute("SELECT kind FROM videos WHERE booking_id = 'b1' ORDER BY kind").fetchall()
    assert rows == [("full",), ("highlight",)]
