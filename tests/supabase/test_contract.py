"""The exact HTTP requests the Supabase store sends for each operation, as Supabase documents them:
PostgREST (`/rest/v1`, Prefer: resolution=merge-duplicates / ignore-duplicates, on_conflict, filters as
`col=op.value`), Storage (`/storage/v1/object/{bucket}/{path}`, multipart with the file's content type,
`x-upsert: true`) and the resumable endpoint (`/storage/v1/upload/resumable`, Tus-Resumable 1.0.0,
Upload-Metadata bucketName/objectName/contentType/cacheControl, 6 MB PATCH chunks).

Verified against tests/supabase/fakecloud.py recording every request (SUPABASE_URL points at it)."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from shared.models import BookingIn, BookingStatus, LogoPlacement, SystemStatusRow, UserSettings, Video, video_id_for
from shared.store.cloud.tus import CHUNK_SIZE
from tests.supabase.conftest import KEY, drain

START = datetime(2030, 5, 1, 18, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
AUTH = {"apikey": KEY, "authorization": f"Bearer {KEY}"}
REST = {**AUTH, "content-type": "application/json", "accept-profile": "public", "content-profile": "public"}


def _query(entry) -> list[tuple[str, str]]:
    return parse_qsl(entry["query"], keep_blank_values=True)


def _pick(entry, *names) -> dict[str, str]:
    return {n: entry["headers"][n] for n in names if n in entry["headers"]}


def _only(fake_cloud) -> dict:
    entries = fake_cloud.requests()
    assert len(entries) == 1, [(e["method"], e["path"]) for e in entries]
    return entries[0]


def _booked(store, settings, booking_id="b1"):
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=START, end_time=END)],
                          settings.camera_id)
    drain(store)


def test_storage_timeout_is_raised_above_the_20s_default(store, cloud_settings):
    assert store.cloud.http.timeout.read == cloud_settings.supabase_storage_timeout_s > 20
    assert store.cloud.supabase.storage.session is store.cloud.http  # storage really uses that client


def test_create_booking_is_an_insert_that_ignores_duplicates(store, cloud_settings, fake_cloud):
    _booked(store, cloud_settings)
    entry = _only(fake_cloud)
    assert (entry["method"], entry["path"], _query(entry)) == ("POST", "/rest/v1/bookings", [("on_conflict", "id")])
    assert _pick(entry, *REST, "prefer") == {**REST, "prefer": "return=minimal,resolution=ignore-duplicates"}
    assert entry["body"] == {"id": "b1", "user_id": "u1", "camera_id": cloud_settings.camera_id,
                             "start_time": "2030-05-01T18:00:00+00:00", "end_time": "2030-05-01T19:00:00+00:00",
                             "status": "confirmed"}
    assert entry["status"] == 201


def test_status_change_is_a_conditional_patch(store, cloud_settings, fake_cloud):
    _booked(store, cloud_settings)
    fake_cloud.clear_log()
    store.advance_booking_status("b1", BookingStatus.video_processed)
    store.advance_booking_status("b1", BookingStatus.completed)  # stale: not even queued
    drain(store)
    entry = _only(fake_cloud)
    assert (entry["method"], entry["path"]) == ("PATCH", "/rest/v1/bookings")
    assert _query(entry) == [("id", "eq.b1"), ("status", "in.(confirmed,missed,completed)")]
    assert _pick(entry, *REST, "prefer") == {**REST, "prefer": "return=minimal"}
    assert entry["body"] == {"status": "video_processed"} and entry["status"] == 204


def test_a_missed_booking_is_a_conditional_patch_with_its_reason(store, cloud_settings, fake_cloud):
    _booked(store, cloud_settings)
    fake_cloud.clear_log()
    store.advance_booking_status("b1", BookingStatus.missed, reason="recorder_offline: not running")
    drain(store)
    entry = _only(fake_cloud)
    assert _query(entry) == [("id", "eq.b1"), ("status", "in.(confirmed)")]
    assert entry["body"] == {"status": "missed", "status_reason": "recorder_offline: not running"}
    assert entry["status"] == 204


def test_moving_and_deleting_a_booking(store, cloud_settings, fake_cloud):
    _booked(store, cloud_settings)
    fake_cloud.clear_log()
    store.update_booking_times("b1", START + timedelta(minutes=30), END + timedelta(minutes=30))
    store.delete_booking("b1")
    drain(store)
    move, delete = fake_cloud.requests()
    assert (move["method"], move["path"], _query(move)) == (
        "PATCH", "/rest/v1/bookings", [("id", "eq.b1"), ("status", "eq.confirmed")])
    assert move["body"] == {"start_time": "2030-05-01T18:30:00+00:00", "end_time": "2030-05-01T19:30:00+00:00"}
    assert (delete["method"], delete["path"], _query(delete)) == ("DELETE", "/rest/v1/bookings", [("id", "eq.b1")])
    assert _pick(delete, *AUTH, "prefer") == {**AUTH, "prefer": "return=minimal"}


def test_videos_row_is_an_upsert_on_its_id(store, cloud_settings, fake_cloud):
    _booked(store, cloud_settings)
    fake_cloud.clear_log()
    uploaded = datetime(2030, 5, 1, 19, 5, tzinfo=UTC)
    video = Video(id=video_id_for("b1"), booking_id="b1", user_id="u1", camera_id=cloud_settings.camera_id,
                  storage_path="u1/b1.mp4", size_bytes=1234, duration_seconds=61.5, created_at=uploaded,
                  uploaded_at=uploaded)
    store.upsert_video(video)
    store.upsert_video(video)  # a retry after a crash: same row, no second one
    drain(store)
    first, second = fake_cloud.requests()
    assert first["body"] == second["body"]
    assert (first["method"], first["path"], _query(first)) == (
        "POST", "/rest/v1/videos", [("on_conflict", "id")])
    assert _pick(first, *REST, "prefer") == {**REST, "prefer": "return=minimal,resolution=merge-duplicates"}
    assert first["body"] == {"id": video_id_for("b1"), "booking_id": "b1", "user_id": "u1",
                             "camera_id": cloud_settings.camera_id, "storage_path": "u1/b1.mp4",
                             "size_bytes": 1234, "duration_seconds": 61.5,
                             "created_at": "2030-05-01T19:05:00+00:00", "uploaded_at": "2030-05-01T19:05:00+00:00"}


def test_system_status_upserts_the_row_and_appends_history(store, cloud_settings, fake_cloud):
    at = datetime(2030, 5, 1, 18, 0, 30, tzinfo=UTC)
    store.put_system_status(SystemStatusRow(camera_id=cloud_settings.camera_id, collected_at=at,
                                            snapshot={"cpu_percent": 12.5}))
    drain(store)
    latest, history = fake_cloud.requests()
    body = {"camera_id": cloud_settings.camera_id, "collected_at": "2030-05-01T18:00:30+00:00",
            "snapshot": {"cpu_percent": 12.5}}
    assert (latest["path"], _query(latest), latest["headers"]["prefer"], latest["body"]) == (
        "/rest/v1/system_status", [("on_conflict", "camera_id")], "return=minimal,resolution=merge-duplicates", body)
    assert (history["path"], _query(history), history["headers"]["prefer"], history["body"]) == (
        "/rest/v1/system_status_history", [("on_conflict", "camera_id,collected_at")],
        "return=minimal,resolution=ignore-duplicates", body)


def test_user_settings_upsert_and_read(store, fake_cloud):
    store.put_user_settings(UserSettings(user_id="u1", logo_path="u1/media/logo-0123456789abcdef.png",
                                         sponsor_logo_paths=["u1/media/sponsor_logo-0123456789abcdef.png"]))
    drain(store)
    assert store.get_user_settings("u1").logo_path == "u1/media/logo-0123456789abcdef.png"
    write, read = fake_cloud.requests()
    assert (write["method"], write["path"], _query(write)) == ("POST", "/rest/v1/user_settings",
                                                               [("on_conflict", "user_id")])
    assert write["body"] == {"user_id": "u1", "intro_video_path": None,
                             "logo_path": "u1/media/logo-0123456789abcdef.png",
                             "sponsor_logo_paths": ["u1/media/sponsor_logo-0123456789abcdef.png"],
                             "logo_placement": None, "sponsor_logo_placements": []}
    assert (read["method"], read["path"], _query(read)) == (
        "GET", "/rest/v1/user_settings", [("select", "*"), ("user_id", "eq.u1")])
    assert _pick(read, *AUTH) == AUTH


def test_logo_placements_travel_to_the_cloud_and_back(store, fake_cloud, db):
    placed = LogoPlacement(corner="bottom-left", width_fraction=0.25, margin_fraction=0.0)
    sponsor = LogoPlacement(corner="top-left", width_fraction=0.1, margin_fraction=0.05)
    store.put_user_settings(UserSettings(user_id="u1", logo_path="u1/media/logo-0123456789abcdef.png",
                                         sponsor_logo_paths=["u1/media/sponsor-0123456789abcdef.png"] * 2,
                                         logo_placement=placed, sponsor_logo_placements=[None, sponsor]))
    drain(store)
    (write,) = fake_cloud.requests()
    assert write["body"]["logo_placement"] == {"corner": "bottom-left", "width_fraction": 0.25, "margin_fraction": 0.0}
    assert write["body"]["sponsor_logo_placements"] == [None, sponsor.model_dump()]
    row = db.execute("SELECT logo_placement, sponsor_logo_placements FROM user_settings").fetchone()
    assert row == (placed.model_dump(), [None, sponsor.model_dump()])  # jsonb in the real PostgreSQL
    store.local.put_user_settings(UserSettings(user_id="u1"))  # the mirror forgets; the cloud answers
    got = store.get_user_settings("u1")
    assert (got.logo_placement, got.sponsor_logo_placements) == (placed, [None, sponsor])


def test_pulling_bookings_selects_this_cameras_current_ones_page_by_page(store, cloud_settings, fake_cloud):
    store.pull_bookings(cloud_settings.camera_id)
    entry = _only(fake_cloud)  # no bookings: the first page is the empty one
    query = dict(_query(entry))
    assert (entry["method"], entry["path"]) == ("GET", "/rest/v1/bookings")
    assert [k for k, _ in _query(entry)] == ["select", "camera_id", "end_time", "order", "limit", "offset"]
    assert query["select"] == "*" and query["camera_id"] == f"eq.{cloud_settings.camera_id}"
    assert query["order"] == "start_time.asc,id.asc" and query["limit"] == "1000" and query["offset"] == "0"
    since = datetime.fromisoformat(query["end_time"].removeprefix("gt."))
    assert timedelta(minutes=59) < datetime.now(UTC) - since < timedelta(minutes=61)  # KEEP_PAST = 1 h


def test_small_object_is_one_multipart_post_with_upsert_and_its_content_type(store, fake_cloud, tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(os.urandom(4096))
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    drain(store)
    entry = _only(fake_cloud)
    assert (entry["method"], entry["path"], entry["query"]) == ("POST", "/storage/v1/object/videos/u1/b1.mp4", "")
    assert _pick(entry, *AUTH, "x-upsert") == {**AUTH, "x-upsert": "true"}
    assert entry["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert entry["body"] == {"fields": {"cacheControl": "3600"}, "file": {
        "field": "file", "filename": "b1.mp4", "content_type": "video/mp4", "size": 4096,
        "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}}
    assert entry["status"] == 200


def test_large_object_goes_through_tus_in_6mb_chunks(store, fake_cloud, tmp_path):
    size = 2 * CHUNK_SIZE + 1000
    src = tmp_path / "big.mp4"
    src.write_bytes(os.urandom(size))
    store.put_object("videos", "u1/b2.mp4", src, "video/mp4")
    drain(store)
    create, *patches = fake_cloud.requests()
    tus = {"tus-resumable": "1.0.0", "x-upsert": "true"}
    assert (create["method"], create["path"]) == ("POST", "/storage/v1/upload/resumable")
    metadata = dict(pair.split(" ") for pair in create["headers"]["upload-metadata"].split(","))
    assert list(metadata) == ["bucketName", "objectName", "contentType", "cacheControl"]
    assert {k: base64.b64decode(v).decode() for k, v in metadata.items()} == {
        "bucketName": "videos", "objectName": "u1/b2.mp4", "contentType": "video/mp4", "cacheControl": "3600"}
    assert _pick(create, *AUTH, *tus, "upload-length") == {**AUTH, **tus, "upload-length": str(size)}
    assert create["status"] == 201
    assert [(p["method"], p["body"]["upload_offset"], p["body"]["size"], p["status"]) for p in patches] == [
        ("PATCH", "0", CHUNK_SIZE, 204), ("PATCH", str(CHUNK_SIZE), CHUNK_SIZE, 204),
        ("PATCH", str(2 * CHUNK_SIZE), 1000, 204)]
    assert all(_pick(p, *AUTH, *tus, "content-type") == {**AUTH, **tus, "content-type":
                                                         "application/offset+octet-stream"} for p in patches)
    assert all(p["path"] == patches[0]["path"].rsplit("/", 1)[0] + "/" + p["path"].rsplit("/", 1)[1]
               for p in patches)
    assert fake_cloud.object_file("videos", "u1/b2.mp4").read_bytes() == src.read_bytes()


def test_objects_download_exist_and_delete(make_store, store, fake_cloud, tmp_path, cloud_settings):
    src = tmp_path / "logo.png"
    src.write_bytes(b"\x89PNG" + os.urandom(100))
    store.put_object("media", "u1/media/logo.png", src, "image/png")
    drain(store)
    fake_cloud.clear_log()
    other = make_store(cloud_settings.model_copy(update={"data_dir": tmp_path / "other-device"}))
    assert other.object_exists("media", "u1/media/logo.png")
    dest = other.get_object("media", "u1/media/logo.png", tmp_path / "out.png")
    assert dest.read_bytes() == src.read_bytes()
    other.delete_object("media", "u1/media/logo.png")
    drain(other)
    exists, download, delete = fake_cloud.requests()
    assert (exists["method"], exists["path"]) == ("GET", "/storage/v1/object/info/media/u1/media/logo.png")
    assert (download["method"], download["path"], download["query"]) == (
        "GET", "/storage/v1/object/media/u1/media/logo.png", "")
    assert (delete["method"], delete["path"], delete["body"]) == (
        "DELETE", "/storage/v1/object/media", {"prefixes": ["u1/media/logo.png"]})
    assert all(_pick(e, *AUTH) == AUTH for e in (exists, download, delete))
    assert not fake_cloud.object_file("media", "u1/media/logo.png").exists()
