"""The API with its real store, real broker and real files."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from shared.schedule_cache import read_cache
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.conftest import TOKEN
from tests.media import make_logo_png, make_recording

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def _booking(booking_id: str = "b1", start_in_s: float = 3600, seconds: float = 600, **extra: object) -> dict:
    start = utc_now() + timedelta(seconds=start_in_s)
    return {"id": booking_id, "user_id": "u1", "start_time": isoformat_z(start),
            "end_time": isoformat_z(start + timedelta(seconds=seconds)), **extra}


def test_health_is_open_everything_else_needs_the_token(client):
    assert client.get("/health").status_code == 200
    assert client.get("/bookings").status_code == 401
    assert client.get("/bookings", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/videos", headers=AUTH).status_code == 200


def test_refuses_to_start_without_a_token(make_settings):
    with pytest.raises(ValueError, match="API_TOKEN"):
        create_app(make_settings(api_token=None))


def test_create_is_idempotent_and_publishes_the_schedule(client, settings, listen):
    schedule = listen(f"ezrec/{settings.camera_id}/bookings")
    body = _booking()
    first = client.post("/bookings", json=body, headers=AUTH)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "confirmed" and first.json()["camera_id"] == settings.camera_id
    again = client.post("/bookings", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json() == first.json()
    changed = client.post("/bookings", json={**body, "user_id": "u2"}, headers=AUTH)
    assert changed.status_code == 409 and changed.json()["detail"]["conflicting_id"] == "b1"
    overlap = client.post("/bookings", json=_booking("b2", start_in_s=3700), headers=AUTH)
    assert overlap.status_code == 409 and "overlaps booking b1" in overlap.json()["detail"]["message"]

    _, payload = schedule.wait_for(lambda t, p: any(b["id"] == "b1" for b in json.loads(p)["bookings"]))
    assert json.loads(payload)["v"] == 1
    cache = read_cache(settings.bookings_cache_path)
    assert [b.id for b in cache.bookings] == ["b1"]


def test_list_of_bookings_and_filters(client):
    r = client.post("/bookings", json=[_booking("a", 3600), _booking("b", 7200)], headers=AUTH)
    assert r.status_code == 201 and [b["id"] for b in r.json()] == ["a", "b"]
    assert [b["id"] for b in client.get("/bookings", headers=AUTH).json()] == ["a", "b"]
    to = isoformat_z(utc_now() + timedelta(seconds=5000))
    assert [b["id"] for b in client.get("/bookings", params={"to": to}, headers=AUTH).json()] == ["a"]
    assert client.get("/bookings/b", headers=AUTH).json()["id"] == "b"
    assert client.get("/bookings/zzz", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"start_time": "2030-01-01T10:00:00"}, "timezone"),
        ({"id": "../etc"}, "pattern"),
        ({"end_time": "2000-01-01T00:00:00Z"}, "end_time must be after start_time"),
    ],
)
def test_bad_bookings_get_422_with_a_reason(client, change, reason):
    r = client.post("/bookings", json={**_booking(), **change}, headers=AUTH)
    assert r.status_code == 422 and reason in r.text


def test_too_long_and_past_bookings_are_refused(client, settings):
    r = client.post("/bookings", json=_booking(seconds=(settings.max_booking_minutes + 1) * 60), headers=AUTH)
    assert r.status_code == 422 and "MAX_BOOKING_MINUTES" in r.text
    r = client.post("/bookings", json=_booking(start_in_s=-7200, seconds=60), headers=AUTH)
    assert r.status_code == 422 and "ends in the past" in r.text


def test_delete_before_start_only(client):
    client.post("/bookings", json=[_booking("later"), _booking("now", start_in_s=-10, seconds=600)], headers=AUTH)
    assert client.delete("/bookings/later", headers=AUTH).status_code == 204
    assert client.get("/bookings/later", headers=AUTH).status_code == 404
    assert client.delete("/bookings/now", headers=AUTH).status_code == 409


def test_media_upload_is_checked_before_it_is_stored(client, tmp_path, listen):
    updates = listen("ezrec/media/updated")
    logo = make_logo_png(tmp_path / "logo.png")
    r = client.put("/users/u1/media/logo", files={"file": ("x.png", logo.read_bytes(), "image/png")}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["logo_path"].startswith("u1/media/logo-")
    updates.wait_for(lambda t, p: json.loads(p)["kind"] == "logo")
    not_png = client.put("/users/u1/media/logo", files={"file": ("x.png", b"GIF89a....", "image/png")},
                         headers=AUTH)
    assert not_png.status_code == 415 and "PNG" in not_png.text
    bomb = bytearray(logo.read_bytes())
    bomb[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR claims 30000x30000
    r = client.put("/users/u1/media/logo", files={"file": ("b.png", bytes(bomb), "image/png")}, headers=AUTH)
    assert r.status_code == 415 and "30000x30000" in r.text
    not_video = client.put("/users/u1/media/intro", files={"file": ("i.mp4", b"hello world!", "video/mp4")},
                           headers=AUTH)
    assert not_video.status_code == 415
    assert client.get("/users/u1/settings", headers=AUTH).json()["logo_path"].startswith("u1/media/logo-")


def test_video_download_supports_range(client, settings, tmp_path):
    from shared.models import Video, video_id_for

    store = LocalStore(settings.data_dir)
    clip = make_recording(tmp_path / "clip.mp4", 1.0)
    store.put_object("videos", "u1/b1.mp4", clip, "video/mp4")
    store.upsert_video(Video(id=video_id_for("b1"), booking_id="b1", user_id="u1", camera_id=settings.camera_id,
                             storage_path="u1/b1.mp4", size_bytes=clip.stat().st_size, duration_seconds=1.0))
    listed = client.get("/videos", params={"booking_id": "b1"}, headers=AUTH).json()
    assert len(listed) == 1
    url = f"/videos/{listed[0]['id']}/download"
    full = client.get(url, headers=AUTH)
    assert full.status_code == 200 and full.content == clip.read_bytes()
    assert full.headers["content-type"] == "video/mp4"
    part = client.get(url, headers={**AUTH, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == clip.read_bytes()[10:20]
    assert client.get("/videos/nope/download", headers=AUTH).status_code == 404
