"""The embedded store's `videos.kind`: highlights beside a booking's full video, and a database made before them."""

from __future__ import annotations

import sqlite3

from shared.models import Video, highlight_video_id, storage_path_for_highlight, video_id_for
from shared.store import LocalStore

OLD_VIDEOS = """
CREATE TABLE videos (
    id TEXT PRIMARY KEY, booking_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, camera_id TEXT NOT NULL,
    storage_path TEXT NOT NULL, size_bytes INTEGER NOT NULL, duration_seconds REAL NOT NULL,
    created_at TEXT NOT NULL, uploaded_at TEXT);
INSERT INTO videos VALUES ('v-old', 'old', 'u1', 'cam1', 'u1/old.mp4', 5, 1.0, '2026-11-01T10:00:00.000000Z', NULL);
"""


def _full(booking_id: str, size: int = 10) -> Video:
    return Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1", camera_id="cam1",
                 storage_path=f"u1/{booking_id}.mp4", size_bytes=size, duration_seconds=5.0)


def _highlight(booking_id: str, clip_id: str, size: int = 10) -> Video:
    return Video(id=highlight_video_id(booking_id, clip_id), kind="highlight", booking_id=booking_id, user_id="u1",
                 camera_id="cam1", storage_path=storage_path_for_highlight("u1", booking_id, clip_id),
                 size_bytes=size, duration_seconds=3.0)


def test_highlights_sit_beside_the_full_video_and_retries_never_duplicate(tmp_path):
    store = LocalStore(tmp_path)
    store.upsert_video(_full("a"))
    for clip in ("h1", "h2", "h1"):  # h1 twice: a retry after a crash
        store.upsert_video(_highlight("a", clip))
    store.upsert_video(_full("a", size=20))
    assert sorted(v.kind for v in store.list_videos(booking_id="a")) == ["full", "highlight", "highlight"]
    assert [v.size_bytes for v in store.list_videos(booking_id="a", kind="full")] == [20]
    highlights = store.list_videos(booking_id="a", kind="highlight")
    assert {v.storage_path for v in highlights} == {"u1/highlights/a/h1.mp4", "u1/highlights/a/h2.mp4"}
    assert store.get_video(highlight_video_id("a", "h2")).kind == "highlight"


def test_a_database_from_before_highlights_is_migrated_in_place(tmp_path):
    with sqlite3.connect(tmp_path / "ezrec.sqlite3") as db:
        db.executescript(OLD_VIDEOS)
    store = LocalStore(tmp_path)
    [old] = store.list_videos(booking_id="old")
    assert (old.id, old.kind, old.size_bytes) == ("v-old", "full", 5)
    store.upsert_video(_highlight("old", "h1"))
    store.upsert_video(_full("old", size=7).model_copy(update={"id": "v-old"}))
    assert sorted((v.kind, v.size_bytes) for v in store.list_videos(booking_id="old")) == [("full", 7),
                                                                                          ("highlight", 10)]
    LocalStore(tmp_path)  # opening it again finds it migrated
    assert len(LocalStore(tmp_path).list_videos()) == 2
