"""Media uploads are checked (bytes, dimensions, decode, size) before they are stored; settings and notify."""

from __future__ import annotations

import json

import pytest

from services.api.media_checks import MAX_INTRO_SECONDS
from shared.store import LocalStore
from tests.api.conftest import AUTH
from tests.media import make_intro, make_logo_png


def _put(client, user: str, kind: str, data: bytes, name: str = "f", content_type: str = "application/octet-stream"):
    return client.put(f"/users/{user}/media/{kind}", files={"file": (name, data, content_type)}, headers=AUTH)


def test_logo_upload_is_checked_before_it_is_stored(client, settings, tmp_path, listen):
    updates = listen("ezrec/media/updated")
    logo = make_logo_png(tmp_path / "logo.png").read_bytes()
    r = _put(client, "u1", "logo", logo, "x.png", "image/png")
    assert r.status_code == 200, r.text
    path = r.json()["logo_path"]
    assert path.startswith("u1/media/logo-") and path.endswith(".png")
    _, payload = updates.wait_for(lambda t, p: json.loads(p)["kind"] == "logo")
    assert json.loads(payload)["path"] == path and json.loads(payload)["user_id"] == "u1"
    store = LocalStore(settings.data_dir)
    assert store.local_object_path("media", path).read_bytes() == logo

    refused = {
        "gif": b"GIF89a" + b"\0" * 64,
        "truncated": logo[: len(logo) // 2],
        "bomb": logo[:16] + (30000).to_bytes(4, "big") * 2 + logo[24:],
    }
    assert _put(client, "u1", "logo", refused["gif"], "x.png", "image/png").status_code == 415
    truncated = _put(client, "u1", "logo", refused["truncated"], "x.png", "image/png")
    assert truncated.status_code == 415 and "decode" in truncated.text
    bomb = _put(client, "u1", "logo", refused["bomb"], "b.png", "image/png")
    assert bomb.status_code == 415 and "30000x30000" in bomb.text
    assert _put(client, "u1", "logo", b"", "e.png").status_code == 422
    # Nothing refused was stored: the settings still name the first logo, and only it is in the bucket.
    assert client.get("/users/u1/settings", headers=AUTH).json()["logo_path"] == path
    assert sorted(p.name for p in (settings.data_dir / "files" / "media" / "u1" / "media").iterdir()) == \
        [path.rsplit("/", 1)[1]]


def test_replacing_a_logo_removes_the_old_object(client, settings, tmp_path):
    first = _put(client, "u1", "logo", make_logo_png(tmp_path / "a.png").read_bytes()).json()["logo_path"]
    second = _put(client, "u1", "logo", make_logo_png(tmp_path / "b.png", rgba=(0, 0, 255, 255)).read_bytes())
    assert second.status_code == 200 and second.json()["logo_path"] != first
    store = LocalStore(settings.data_dir)
    assert not store.object_exists("media", first) and store.object_exists("media", second.json()["logo_path"])
    gone = client.delete("/users/u1/media/logo", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["logo_path"] is None


def test_logo_size_limit(client):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024 + 10)
    r = _put(client, "u1", "logo", big, "big.png", "image/png")
    assert r.status_code == 413 and "5 MB" in r.text


def test_intro_upload_sniffs_and_decodes(client, tmp_path, listen):
    updates = listen("ezrec/media/updated")
    intro = make_intro(tmp_path / "intro.mp4", 1.0, audio=False).read_bytes()
    r = _put(client, "u1", "intro", intro, "intro.bin", "text/plain")  # the declared type is never trusted
    assert r.status_code == 200, r.text
    assert r.json()["intro_video_path"].endswith(".mp4")
    updates.wait_for(lambda t, p: json.loads(p)["kind"] == "intro")
    not_video = _put(client, "u1", "intro", b"hello world!" * 10, "i.mp4", "video/mp4")
    assert not_video.status_code == 415 and "MP4" in not_video.text
    fake_mp4 = b"\0\0\0\x18ftypisom" + b"\0" * 200  # right magic bytes, no decodable video
    assert _put(client, "u1", "intro", fake_mp4, "i.mp4", "video/mp4").status_code == 415


def test_intro_length_and_upload_size_limits(client, make_settings, tmp_path):
    from fastapi.testclient import TestClient

    from services.api.main import create_app

    long_intro = make_intro(tmp_path / "long.mp4", MAX_INTRO_SECONDS + 2, size=(64, 48), fps=5, audio=False)
    r = _put(client, "u1", "intro", long_intro.read_bytes(), "l.mp4")
    assert r.status_code == 415 and "at most 60 s" in r.text
    with TestClient(create_app(make_settings(max_upload_mb=1))) as small:
        r = _put(small, "u1", "intro", b"\0\0\0\x18ftypisom" + b"\0" * (1024 * 1024), "i.mp4")
        assert r.status_code == 413


def test_sponsor_logos_up_to_three(client, settings, tmp_path, listen):
    updates = listen("ezrec/media/updated")
    colours = [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255), (9, 9, 9, 255)]
    pngs = [make_logo_png(tmp_path / f"s{i}.png", rgba=c).read_bytes() for i, c in enumerate(colours)]
    paths = []
    for png in pngs[:3]:
        r = client.post("/users/u1/media/sponsor_logos", files={"file": ("s.png", png, "image/png")}, headers=AUTH)
        assert r.status_code == 201, r.text
        paths.append(r.json()["sponsor_logo_paths"][-1])
    assert len(set(paths)) == 3 and all(p.startswith("u1/media/sponsor-") for p in paths)
    full = client.post("/users/u1/media/sponsor_logos", files={"file": ("s.png", pngs[3], "image/png")}, headers=AUTH)
    assert full.status_code == 409 and "3 sponsor logos" in full.text
    bad = client.post("/users/u2/media/sponsor_logos", files={"file": ("s.png", b"GIF89a", "image/png")}, headers=AUTH)
    assert bad.status_code == 415
    updates.wait_for(lambda t, p: sum(json.loads(m)["kind"] == "sponsor_logo" for _, m, _ in updates.messages) >= 3)

    removed = client.delete("/users/u1/media/sponsor_logos/1", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["sponsor_logo_paths"] == [paths[0], paths[2]]
    assert not LocalStore(settings.data_dir).object_exists("media", paths[1])
    assert client.delete("/users/u1/media/sponsor_logos/2", headers=AUTH).status_code == 404
    assert client.delete("/users/u1/media/sponsor_logos/3", headers=AUTH).status_code == 422


def test_put_settings_points_at_existing_objects(client, settings, tmp_path, listen):
    updates = listen("ezrec/media/updated")
    store = LocalStore(settings.data_dir)
    logo = make_logo_png(tmp_path / "l.png")
    store.put_object("media", "u1/media/elsewhere-logo.png", logo, "image/png")
    store.put_object("media", "u1/media/elsewhere-sponsor.png", logo, "image/png")
    body = {"logo_path": "u1/media/elsewhere-logo.png", "sponsor_logo_paths": ["u1/media/elsewhere-sponsor.png"]}
    r = client.put("/users/u1/settings", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["logo_path"] == body["logo_path"] and r.json()["intro_video_path"] is None
    updates.wait_for(lambda t, p: json.loads(p)["kind"] == "logo" and json.loads(p)["path"] == body["logo_path"])
    updates.wait_for(lambda t, p: json.loads(p)["kind"] == "sponsor_logo")
    assert client.get("/users/u1/settings", headers=AUTH).json()["sponsor_logo_paths"] == body["sponsor_logo_paths"]

    missing = client.put("/users/u1/settings", json={"logo_path": "u1/media/nope.png"}, headers=AUTH)
    assert missing.status_code == 422 and "does not exist" in missing.text
    other_user = client.put("/users/u1/settings", json={"logo_path": "u2/media/x.png"}, headers=AUTH)
    assert other_user.status_code == 422 and "not under u1/media/" in other_user.text
    escape = client.put("/users/u1/settings", json={"logo_path": "u1/media/../../etc/passwd"}, headers=AUTH)
    assert escape.status_code == 422 and "not a valid object path" in escape.text
    four = client.put("/users/u1/settings", json={"sponsor_logo_paths": ["u1/media/a.png"] * 4}, headers=AUTH)
    assert four.status_code == 422
    assert client.get("/users/u1/settings", headers=AUTH).json()["logo_path"] == body["logo_path"]


@pytest.mark.parametrize("path", ["u1/media/logo-abc.png", None])
def test_media_notify_publishes(client, listen, path):
    updates = listen("ezrec/media/updated")
    r = client.post("/media/notify", json={"user_id": "u1", "kind": "logo", "path": path}, headers=AUTH)
    assert r.status_code == 202, r.text
    _, payload = updates.wait_for(lambda t, p: json.loads(p)["user_id"] == "u1")
    event = json.loads(payload)
    assert event["v"] == 1 and event["kind"] == "logo" and event["path"] == path
    assert r.json()["path"] == path


def test_media_notify_validates(client):
    bad = [{"user_id": "u1", "kind": "banner"}, {"user_id": "a/b", "kind": "logo"},
           {"user_id": "u1", "kind": "logo", "path": "u2/media/x.png"},
           {"user_id": "u1", "kind": "logo", "path": "../x"}]
    for body in bad:
        assert client.post("/media/notify", json=body, headers=AUTH).status_code == 422, body
