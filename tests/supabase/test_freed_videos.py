"""A video whose local copy the disk guard freed (the cloud confirmed its upload) is still served: its download and
share links redirect (302) to a short-lived signed Storage URL made by the fake cloud as supabase/storage makes
them, and its thumbnail, made before the copy was freed, is kept. A share link never hands out a URL that outlives
it, and the share page plays the redirected video in Chromium (its CSP allows the Storage origin)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from playwright.sync_api import expect

from shared.models import BookingIn, BookingStatus, Video, storage_path_for_video, video_id_for
from shared.thumbnails import thumbnail_dir
from shared.timeutil import utc_now
from tests.api.conftest import AUTH, LiveServer
from tests.api.test_dashboard_browser import browser_page  # noqa: F401 - the Chromium fixture
from tests.media import make_recording
from tests.supabase.conftest import drain

SECONDS = 2.0


@pytest.fixture
def api(cloud_settings):
    from services.api.main import create_app

    server = LiveServer(create_app(cloud_settings))
    server.start()
    yield server
    server.stop()


def freed_video(store, tmp_path: Path, booking_id: str = "b1") -> tuple[Video, bytes]:
    """A video the worker stored and the cloud confirmed, whose local copy the disk guard then freed."""
    start = utc_now().replace(microsecond=0)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start.replace(year=start.year + 1))], store.settings.camera_id)
    clip = make_recording(tmp_path / f"{booking_id}.mp4", SECONDS)
    path = storage_path_for_video("u1", booking_id)
    store.put_object("videos", path, clip, "video/mp4")
    video = store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1",
                                     camera_id=store.settings.camera_id, storage_path=path,
                                     size_bytes=clip.stat().st_size, duration_seconds=SECONDS, uploaded_at=utc_now()))
    for status in (BookingStatus.completed, BookingStatus.video_processed, BookingStatus.video_uploaded):
        store.advance_booking_status(booking_id, status)
    drain(store)
    mirror = store.local_object_path("videos", path)
    assert mirror is not None and mirror in store.reclaimable_files()
    thumbs = thumbnail_dir(store.settings.data_dir)
    assert not list(thumbs.glob(f"{video.id}-*.jpg")), "nobody asked for the thumbnail yet"
    assert store.reclaim_file(mirror)
    assert store.local_object_path("videos", path) is None
    return video, clip.read_bytes()


def _claims(location: str) -> dict:
    token = parse_qs(urlsplit(location).query)["token"][0]
    return jwt.decode(token, options={"verify_signature": False})


def test_a_freed_video_redirects_to_a_short_lived_signed_url(api, store, fake_cloud, cloud_settings, tmp_path):
    video, original = freed_video(store, tmp_path)
    kept = list(thumbnail_dir(cloud_settings.data_dir).glob(f"{video.id}-*.jpg"))
    assert len(kept) == 1, "the thumbnail was made before the copy was freed"

    http = httpx.Client(base_url=api.url, headers=AUTH, timeout=30)
    answer = http.get(f"/videos/{video.id}/download")
    assert answer.status_code == 302 and answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    assert location.startswith(f"{fake_cloud.url}/storage/v1/object/sign/videos/u1/b1.mp4?token=")
    claims = _claims(location)
    assert claims["url"] == "videos/u1/b1.mp4" and claims["exp"] - claims["iat"] == 300  # SIGNED_URL_TTL_S
    assert parse_qs(urlsplit(location).query)["download"] == ["b1.mp4"]
    got = httpx.get(location, timeout=30)  # no key: the signed URL is the credential
    assert got.status_code == 200 and got.content == original
    assert got.headers["content-type"] == "video/mp4"
    assert got.headers["content-disposition"].startswith("attachment; filename=b1.mp4")
    part = httpx.get(location, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.content == original[100:200]

    inline = http.get(f"/videos/{video.id}/download", params={"inline": "true"})
    assert inline.status_code == 302 and "download" not in parse_qs(urlsplit(inline.headers["location"]).query)
    followed = http.get(f"/videos/{video.id}/download", follow_redirects=True)
    assert followed.status_code == 200 and followed.content == original

    # The thumbnail is the kept one: no cloud request for it.
    signs = len([r for r in fake_cloud.requests() if "/object/sign/" in r["path"]])
    thumb = http.get(f"/videos/{video.id}/thumbnail")
    assert thumb.status_code == 200 and thumb.content == kept[0].read_bytes()
    assert len([r for r in fake_cloud.requests() if "/object/sign/" in r["path"]]) == signs
    # One freed before thumbnails were kept: made from a frame read through a signed URL, then kept.
    kept[0].unlink()
    thumb = http.get(f"/videos/{video.id}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    assert fake_cloud.events("signed_get"), "read through the signed URL"
    assert list(thumbnail_dir(cloud_settings.data_dir).glob(f"{video.id}-*.jpg"))

    # The signed URL's token is Storage's: a forged one, another path's, an expired one are refused as Storage does.
    assert httpx.get(location.replace("token=", "token=x"), timeout=30).json()["code"] == "InvalidJWT"
    other = location.replace("videos/u1/b1.mp4", "videos/u1/b2.mp4")
    assert httpx.get(other, timeout=30).json() == {"statusCode": "400", "code": "InvalidSignature",
                                                   "error": "InvalidSignature", "message": "Invalid signature"}
    short = store.signed_url("videos", video.storage_path, 1)
    time.sleep(2.1)
    expired = httpx.get(short, timeout=30)
    assert expired.status_code == 400 and expired.json()["message"] == "jwt expired"


def test_a_share_link_of_a_freed_video_never_hands_out_a_url_that_outlives_it(api, store, fake_cloud, tmp_path):
    video, original = freed_video(store, tmp_path)
    link = httpx.post(f"{api.url}/videos/{video.id}/share", headers=AUTH, json={"expires_in_s": 120}).json()
    shared = httpx.get(f"{api.url}{link['url']}/video")
    assert shared.status_code == 302
    assert "no-store" in shared.headers["cache-control"] and shared.headers["referrer-policy"] == "no-referrer"
    claims = _claims(shared.headers["location"])
    assert claims["exp"] <= int(time.time()) + 121, "not beyond the link's own expiry (120 s < SIGNED_URL_TTL_S)"
    assert httpx.get(shared.headers["location"], timeout=30).content == original
    download = httpx.get(f"{api.url}{link['url']}/video", params={"download": "1"})
    assert parse_qs(urlsplit(download.headers["location"]).query)["download"] == ["b1.mp4"]
    page = httpx.get(f"{api.url}{link['url']}")
    assert f"media-src 'self' {fake_cloud.url}" in page.headers["content-security-policy"]

    httpx.delete(f"{api.url}/videos/{video.id}/share", headers=AUTH)
    revoked = httpx.get(f"{api.url}{link['url']}/video")
    assert revoked.status_code == 410 and "location" not in revoked.headers


def test_the_share_page_plays_a_freed_video_in_chromium(api, store, fake_cloud, browser_page, tmp_path):  # noqa: F811
    video, _ = freed_video(store, tmp_path)
    link = httpx.post(f"{api.url}/videos/{video.id}/share", headers=AUTH).json()
    page = browser_page
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(api.url + link["url"])  # a stranger's browser: no token anywhere
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=20_000)
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(SECONDS, abs=0.2)
    assert blocked == []
    assert fake_cloud.events("signed_get"), "the bytes came from the cloud"
    expect(page.locator("#player")).to_be_visible()
    page.screenshot(path=str(tmp_path / "share-freed-video.png"), full_page=True)


def test_a_freed_video_while_the_cloud_is_away_or_without_its_object(api, store, fake_cloud, db, tmp_path):
    video, _ = freed_video(store, tmp_path)
    fake_cloud.kill()
    away = httpx.get(f"{api.url}/videos/{video.id}/download", headers=AUTH)
    assert away.status_code == 503 and away.headers["retry-after"] == "30"
    assert "freed on this device (the cloud has it)" in away.json()["detail"]
    fake_cloud.start()
    store.drainer.note_reachable()
    api.app.state.ezrec.store.drainer.note_reachable()
    # Someone removed the object in the project: not here, not there.
    fake_cloud.object_file("videos", "u1/b1.mp4").unlink()
    db.execute("DELETE FROM storage.objects WHERE bucket_id = 'videos' AND name = 'u1/b1.mp4'")
    gone = httpx.get(f"{api.url}/videos/{video.id}/download", headers=AUTH)
    assert gone.status_code == 404 and "neither on this device nor in the cloud" in gone.json()["detail"]
