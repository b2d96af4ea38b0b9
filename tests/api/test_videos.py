"""Videos: list, metadata, download with Range, thumbnails, and signed share links (expiry, revocation)."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import av
import numpy as np
import pytest

from services.api.share import ShareSigner
from shared.models import ShareLink
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.api.conftest import AUTH, seed_video
from tests.conftest import TOKEN


@pytest.mark.parametrize("spliced", [False, True], ids=["file", "splice"])
def test_list_metadata_and_download_with_range(client, settings, tmp_path, spliced):
    video, clip = seed_video(settings, tmp_path, spliced=spliced)
    seed_video(settings, tmp_path, booking_id="b2", user_id="u2")
    listed = client.get("/videos", params={"booking_id": "b1"}, headers=AUTH).json()
    assert [v["id"] for v in listed] == [video.id]
    assert {v["booking_id"] for v in client.get("/videos", headers=AUTH).json()} == {"b1", "b2"}
    assert [v["booking_id"] for v in client.get("/videos", params={"user_id": "u2"}, headers=AUTH).json()] == ["b2"]
    assert len(client.get("/videos", params={"limit": 1}, headers=AUTH).json()) == 1
    meta = client.get(f"/videos/{video.id}", headers=AUTH)
    assert meta.status_code == 200 and meta.json()["storage_path"] == "u1/b1.mp4"

    url = f"/videos/{video.id}/download"
    data = clip.read_bytes()
    full = client.get(url, headers=AUTH)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-disposition"].startswith("attachment")
    part = client.get(url, headers={**AUTH, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    across = client.get(url, headers={**AUTH, "Range": "bytes=990-1009,2000-2004"})  # two ranges, one across spans
    assert across.status_code == 206 and data[990:1010] in across.content and data[2000:2005] in across.content
    tail = client.get(url, headers={**AUTH, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    assert client.get(url, headers={**AUTH, "Range": f"bytes={len(data) + 10}-"}).status_code == 416
    inline = client.get(url, params={"inline": "true", "token": TOKEN})  # <video src> cannot send headers
    assert inline.status_code == 200 and inline.headers["content-disposition"].startswith("inline")
    assert client.get(url, params={"token": "wrong"}).status_code == 401
    assert client.get("/videos/nope/download", headers=AUTH).status_code == 404
    assert client.get("/videos/nope", headers=AUTH).status_code == 404


def test_download_of_a_file_not_on_this_device_is_404(client, settings, tmp_path):
    video, _ = seed_video(settings, tmp_path)
    LocalStore(settings.data_dir).local_object_path("videos", video.storage_path).unlink()
    r = client.get(f"/videos/{video.id}/download", headers=AUTH)
    assert r.status_code == 404 and "not on this device" in r.text


@pytest.mark.parametrize("spliced", [False, True], ids=["file", "splice"])
def test_thumbnail_is_a_jpeg_of_a_real_frame_and_is_cached(client, settings, tmp_path, spliced):
    video, _ = seed_video(settings, tmp_path, seconds=2.0, spliced=spliced)
    r = client.get(f"/videos/{video.id}/thumbnail", params={"token": TOKEN})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    with av.open(io.BytesIO(r.content)) as jpeg:
        frame = next(jpeg.decode(video=0))
        assert (frame.width, frame.height) == (320, 180)  # 640x360 source, aspect kept
        rgb = frame.to_ndarray(format="rgb24")
    assert rgb.mean() > 60 and rgb.std() > 10  # the bright gradient, not a black or flat frame
    cached = list((settings.data_dir / "cache" / "thumbnails").glob(f"{video.id}-*.jpg"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert client.get(f"/videos/{video.id}/thumbnail", headers=AUTH).content == r.content
    assert cached[0].stat().st_mtime_ns == mtime  # served from the cache, not decoded again


def test_thumbnail_of_an_undecodable_file_is_422(client, settings, tmp_path):
    video, _ = seed_video(settings, tmp_path)
    LocalStore(settings.data_dir).local_object_path("videos", video.storage_path).write_bytes(b"not a video" * 50)
    assert client.get(f"/videos/{video.id}/thumbnail", headers=AUTH).status_code == 422


# ---- share links -----------------------------------------------------------------------------------


def test_share_link_plays_without_a_token_until_revoked(client, settings, tmp_path):
    video, clip = seed_video(settings, tmp_path)
    r = client.post(f"/videos/{video.id}/share", headers=AUTH)
    assert r.status_code == 201, r.text
    link = r.json()
    token = link["token"]
    assert link["url"].endswith(f"/share/{token}") and link["video_url"] == link["url"] + "/video"
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert abs(expires_at - (utc_now() + timedelta(seconds=settings.share_link_ttl))) < timedelta(seconds=5)
    assert client.get(f"/videos/{video.id}/share", headers=AUTH).json()[0]["expires_at"] == link["expires_at"]

    page = client.get(f"/share/{token}")  # no Authorization header
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.search(rf'<video[^>]+src="{re.escape(token)}/video"', page.text)
    assert page.headers["referrer-policy"] == "no-referrer"
    data = clip.read_bytes()
    full = client.get(f"/share/{token}/video")
    assert full.status_code == 200 and full.content == data
    part = client.get(f"/share/{token}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]

    revoked = client.delete(f"/videos/{video.id}/share/{link['id']}", headers=AUTH)
    assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
    assert client.get(f"/share/{token}").status_code == 410
    assert client.get(f"/share/{token}/video").status_code == 410
    assert client.get(f"/videos/{video.id}/share", headers=AUTH).json()[0]["revoked_at"] is not None


def test_share_links_expire_and_cannot_be_forged(client, settings, tmp_path):
    video, _ = seed_video(settings, tmp_path)
    short = client.post(f"/videos/{video.id}/share", json={"expires_in_s": 60}, headers=AUTH).json()
    assert client.get(f"/share/{short['token']}").status_code == 200
    assert client.post(f"/videos/{video.id}/share", json={"expires_in_s": 5}, headers=AUTH).status_code == 422
    capped = client.post(f"/videos/{video.id}/share", json={"expires_in_s": 10**9}, headers=AUTH).json()
    store = LocalStore(settings.data_dir)
    stored = store.get_share_link(capped["id"])
    assert stored.expires_at - stored.created_at == timedelta(seconds=settings.share_link_ttl)

    # A token whose signed expiry has passed (made with the device's own key, so only time is wrong).
    signer = ShareSigner(TOKEN)
    past = utc_now().replace(microsecond=0) - timedelta(seconds=5)
    store.create_share_link(ShareLink(id="oldlink", video_id=video.id, created_at=past - timedelta(hours=1),
                                      expires_at=past))
    expired = signer.sign("oldlink", video.id, past)
    assert client.get(f"/share/{expired}").status_code == 410
    assert "expired" in client.get(f"/share/{expired}/video").text

    # Stretching the expiry breaks the signature; a key other than the device's is refused.
    payload, mac = short["token"].split(".")
    forged = ShareSigner(TOKEN).sign(short["id"], video.id, utc_now() + timedelta(days=365))
    assert client.get(f"/share/{forged.split('.')[0]}.{mac}").status_code == 404
    assert client.get(f"/share/{ShareSigner('other-key').sign(short['id'], video.id, utc_now())}").status_code == 404
    assert client.get("/share/garbage").status_code == 422
    assert client.get(f"/share/{payload}.{'A' * 43}").status_code == 404

    # Revoking all of a video's links.
    all_gone = client.delete(f"/videos/{video.id}/share", headers=AUTH)
    assert all_gone.status_code == 200 and all_gone.json()["revoked"] == 3
    assert client.get(f"/share/{short['token']}").status_code == 410


def test_share_needs_the_device_token_and_a_known_video(client, settings, tmp_path):
    video, _ = seed_video(settings, tmp_path)
    assert client.post(f"/videos/{video.id}/share").status_code == 401
    assert client.post("/videos/nope/share", headers=AUTH).status_code == 404
    assert client.delete(f"/videos/{video.id}/share/nolink", headers=AUTH).status_code == 404


def test_share_page_of_a_video_whose_file_is_gone(client, settings, tmp_path):
    video, _ = seed_video(settings, tmp_path)
    token = client.post(f"/videos/{video.id}/share", headers=AUTH).json()["token"]
    LocalStore(settings.data_dir).local_object_path("videos", video.storage_path).unlink()
    r = client.get(f"/share/{token}/video")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


def test_thumbnail_pixels_come_from_the_video(settings, tmp_path):
    """encode_jpeg keeps colours: a solid frame comes back (nearly) the same colour."""
    from shared.thumbnails import encode_jpeg

    frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), (200, 40, 40), np.uint8), format="rgb24")
    data = encode_jpeg(frame, width=160)
    with av.open(io.BytesIO(data)) as jpeg:
        out = next(jpeg.decode(video=0)).to_ndarray(format="rgb24")
    assert out.shape == (120, 160, 3)
    assert np.abs(out.reshape(-1, 3).mean(axis=0) - (200, 40, 40)).max() < 8


def test_a_trailing_slash_never_redirects_an_unsafe_method(app, client, settings, tmp_path):
    """`DELETE /videos/{id}/share/` (an empty link id) once answered 307 to `DELETE /videos/{id}/share`, which
    revokes every link: curl -L and requests follow that. An unsafe method is never redirected."""
    video, _ = seed_video(settings, tmp_path)
    link = client.post(f"/videos/{video.id}/share", headers=AUTH).json()
    r = client.delete(f"/videos/{video.id}/share/", headers=AUTH, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers, (r.status_code, r.headers)
    followed = client.delete(f"/videos/{video.id}/share/", headers=AUTH, follow_redirects=True)
    assert followed.status_code == 404 and not followed.history
    assert client.get(f"/share/{link['token']}").status_code == 200  # nothing was revoked
    # Every unsafe operation the API declares, asked with a trailing slash: never a redirect.
    filled = {"video_id": video.id, "link_id": link["id"], "booking_id": "b1", "user_id": "u1", "kind": "intro",
              "index": "0"}
    for path, operations in app.openapi()["paths"].items():
        for method in set(operations) - {"get", "head"}:
            url = re.sub(r"\{(\w+)\}", lambda m: filled.get(m[1], "x"), path) + "/"
            answer = client.request(method.upper(), url, headers=AUTH, follow_redirects=False)
            assert not answer.is_redirect, (method, url, answer.status_code)


def test_share_urls_never_come_from_the_host_header(client, make_settings, settings, tmp_path):
    """`Host: evil.example` once gave `http://evil.example/share/...`: a link a victim would trust."""
    video, _ = seed_video(settings, tmp_path)
    evil = {**AUTH, "Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    link = client.post(f"/videos/{video.id}/share", headers=evil).json()
    assert "evil.example" not in link["url"] + link["video_url"]
    assert link["url"] == f"/share/{link['token']}" and link["video_url"] == f"{link['url']}/video"  # relative

    from fastapi.testclient import TestClient

    from services.api.main import create_app

    configured = make_settings(public_base_url="https://court1.example.org/ezrec/")
    with TestClient(create_app(configured)) as other:
        link = other.post(f"/videos/{video.id}/share", headers=evil).json()
        assert link["url"] == f"https://court1.example.org/ezrec/share/{link['token']}"
        assert other.get(link["url"].removeprefix("https://court1.example.org/ezrec")).status_code == 200


def test_a_missing_file_without_supabase_is_a_404_with_its_reason(client, settings, tmp_path):
    """The embedded store never frees a video (its files are the only copy), so there is no cloud to redirect to."""
    video, _ = seed_video(settings, tmp_path, booking_id="gone")
    (settings.data_dir / "files" / "videos" / video.storage_path).unlink()  # lost by hand, or a damaged card
    reason = "is not on this device and there is no cloud copy to send instead (SUPABASE_URL is not set)"
    for path in (f"/videos/{video.id}/download", f"/videos/{video.id}/thumbnail"):
        answer = client.get(path, headers=AUTH, follow_redirects=False)
        assert answer.status_code == 404 and reason in answer.json()["detail"], path
    link = client.post(f"/videos/{video.id}/share", headers=AUTH).json()
    shared = client.get(f"{link['url']}/video", follow_redirects=False)
    assert shared.status_code == 404 and "no longer available" in shared.text
