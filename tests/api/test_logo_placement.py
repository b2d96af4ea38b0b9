"""Logo placement through the API: stored per logo, refused with a 422 that says why, and previewed as one
frame of the camera's format (the JPEG decoded with PyAV: each logo's pixels where and as wide as asked)."""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest

from tests.api.conftest import AUTH
from tests.conftest import TOKEN
from tests.media import assert_box_near, colour_box, expected_logo_body, make_logo_png

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _upload(client, tmp_path, user: str, rgb: tuple[int, int, int], sponsor: bool = False,
            size: tuple[int, int] = (64, 32)) -> dict:
    png = make_logo_png(tmp_path / f"{rgb}-{size}.png", size=size, rgba=(*rgb, 255)).read_bytes()
    files = {"file": ("logo.png", png, "image/png")}
    r = (client.post(f"/users/{user}/media/sponsor_logos", files=files, headers=AUTH) if sponsor
         else client.put(f"/users/{user}/media/logo", files=files, headers=AUTH))
    assert r.status_code in (200, 201), r.text
    return r.json()


def _place(client, user: str, body: dict):
    return client.put(f"/users/{user}/settings/logo_placements", json=body, headers=AUTH)


def _decode(jpeg: bytes) -> np.ndarray:
    with av.open(io.BytesIO(jpeg), format="image2pipe") as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def test_placements_are_stored_returned_and_announced(client, tmp_path, listen):
    _upload(client, tmp_path, "u1", RED)
    _upload(client, tmp_path, "u1", BLUE, sponsor=True)
    updates = listen("ezrec/media/updated")
    mine = {"corner": "bottom-left", "width_fraction": 0.3, "margin_fraction": 0.05}
    r = _place(client, "u1", {"logo_placement": mine, "sponsor_logo_placements": [{"corner": "top-left"}]})
    assert r.status_code == 200, r.text
    assert r.json()["logo_placement"] == mine
    assert r.json()["sponsor_logo_placements"] == [{"corner": "top-left", "width_fraction": 0.15,
                                                    "margin_fraction": 0.02}]
    got = client.get("/users/u1/settings", headers=AUTH).json()
    assert (got["logo_placement"], got["sponsor_logo_placements"]) == (r.json()["logo_placement"],
                                                                       r.json()["sponsor_logo_placements"])
    _, payload = updates.wait_for(lambda t, p: json.loads(p)["kind"] == "logo")
    assert json.loads(payload)["path"] == got["logo_path"]
    # Back to the defaults.
    assert _place(client, "u1", {}).json()["logo_placement"] is None


@pytest.mark.parametrize("body, loc, words", [
    ({"logo_placement": {"corner": "top-left", "width_fraction": 0.6}}, ["body", "logo_placement", "width_fraction"],
     "less than or equal to 0.5"),
    ({"logo_placement": {"corner": "top-left", "width_fraction": 0.0}}, ["body", "logo_placement", "width_fraction"],
     "greater than or equal to 0.02"),
    ({"logo_placement": {"corner": "top-left", "margin_fraction": 0.5}}, ["body", "logo_placement", "margin_fraction"],
     "less than or equal to 0.2"),
    ({"logo_placement": {"corner": "centre"}}, ["body", "logo_placement", "corner"], "top-left"),
    ({"logo_placement": {"corner": "top-left", "opacity": 0.5}}, ["body", "logo_placement", "opacity"],
     "Extra inputs"),
    ({"logo_placement": {"corner": "top-left"}, "sponsor_logo_placements": [{"corner": "top-left"}]},
     ["body", "sponsor_logo_placements", 0], "sponsor logo 0 and the logo are both placed top-left"),
    ({"sponsor_logo_placements": [None, {"corner": "top-left"}]}, ["body", "sponsor_logo_placements", 1],
     "there is no sponsor logo 1 to place (the user has 1)"),
], ids=["too-wide", "too-narrow", "margin-too-big", "unknown-corner", "unknown-key", "same-corner", "no-such-sponsor"])
def test_bad_placements_are_a_422_that_says_what_and_where(client, tmp_path, body, loc, words):
    _upload(client, tmp_path, "u1", RED)
    _upload(client, tmp_path, "u1", BLUE, sponsor=True)
    r = _place(client, "u1", body)
    assert r.status_code == 422, r.text
    [error] = [e for e in r.json()["detail"] if e["loc"] == loc]
    assert words in error["msg"], error
    settings = client.get("/users/u1/settings", headers=AUTH).json()
    assert settings["logo_placement"] is None and settings["sponsor_logo_placements"] == []  # nothing stored


def test_put_settings_checks_placements_too(client, tmp_path):
    logo = _upload(client, tmp_path, "u1", RED)["logo_path"]
    sponsors = _upload(client, tmp_path, "u1", BLUE, sponsor=True)["sponsor_logo_paths"]
    body = {"logo_path": logo, "sponsor_logo_paths": sponsors, "logo_placement": {"corner": "bottom-right"},
            "sponsor_logo_placements": [{"corner": "bottom-right", "width_fraction": 0.1}]}
    r = client.put("/users/u1/settings", json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sponsor_logo_placements", 0], r.text
    body["sponsor_logo_placements"][0]["corner"] = "bottom-left"
    r = client.put("/users/u1/settings", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["sponsor_logo_placements"][0]["corner"] == "bottom-left"


def test_removing_a_sponsor_logo_removes_its_placement(client, tmp_path):
    _upload(client, tmp_path, "u1", RED, sponsor=True)
    _upload(client, tmp_path, "u1", BLUE, sponsor=True)
    placements = [{"corner": "bottom-left"}, {"corner": "bottom-right", "width_fraction": 0.2}]
    assert _place(client, "u1", {"sponsor_logo_placements": placements}).status_code == 200
    r = client.delete("/users/u1/media/sponsor_logos/0", headers=AUTH)
    assert r.status_code == 200
    assert [p["corner"] for p in r.json()["sponsor_logo_placements"]] == ["bottom-right"]
    assert len(r.json()["sponsor_logo_paths"]) == 1


def test_preview_places_each_logo_in_its_corner_at_its_width(client, tmp_path, settings):
    """CAMERA_WIDTH x CAMERA_HEIGHT, asked for at full width so pixels compare 1:1."""
    _upload(client, tmp_path, "u1", RED)
    _upload(client, tmp_path, "u1", BLUE, sponsor=True)
    _upload(client, tmp_path, "u1", GREEN, sponsor=True)
    assert _place(client, "u1", {
        "logo_placement": {"corner": "bottom-left", "width_fraction": 0.3, "margin_fraction": 0.05},
        "sponsor_logo_placements": [{"corner": "top-left", "width_fraction": 0.1, "margin_fraction": 0.0}],
    }).status_code == 200
    size = (settings.camera_width, settings.camera_height)
    r = client.get(f"/users/u1/preview.jpg?width={size[0]}", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "x-logo-warnings" not in r.headers and r.headers["cache-control"] == "no-store"
    frame = _decode(r.content)
    assert frame.shape == (size[1], size[0], 3)
    assert_box_near(colour_box(frame, RED), expected_logo_body(size, "bottom-left", 0.3, 0.05))
    assert_box_near(colour_box(frame, BLUE), expected_logo_body(size, "top-left", 0.1, 0.0))
    # The second sponsor has no placement: the first default corner nobody holds, at the default size.
    assert_box_near(colour_box(frame, GREEN), expected_logo_body(size, "top-right", 0.15, 0.02))

    half = size[0] // 2
    small = _decode(client.get("/users/u1/preview.jpg", params={"width": half, "token": TOKEN}).content)
    assert small.shape == (size[1] // 2, half, 3)  # <img src> with ?token=, scaled down
    scaled = tuple(round(v / 2) for v in expected_logo_body(size, "bottom-left", 0.3, 0.05))
    assert_box_near(colour_box(small, RED), scaled, tolerance=3)
    wider = _decode(client.get("/users/u1/preview.jpg", params={"width": size[0] + 160}, headers=AUTH).content)
    assert wider.shape == (size[1], size[0], 3)  # never more than the camera's width


def test_preview_without_logos_and_with_one_that_does_not_fit(client, tmp_path, settings):
    r = client.get("/users/nobody/preview.jpg", headers=AUTH)
    assert r.status_code == 200 and "x-logo-warnings" not in r.headers
    plain = _decode(r.content)
    assert plain.shape[1] == min(960, settings.camera_width)  # the default width, at most the camera's
    assert colour_box(plain, RED) is None
    _upload(client, tmp_path, "u1", RED, size=(32, 64))  # portrait: at half the width it is taller than the frame
    assert _place(client, "u1", {"logo_placement": {"corner": "top-left", "width_fraction": 0.5}}).status_code == 200
    r = client.get("/users/u1/preview.jpg", headers=AUTH)
    assert r.status_code == 200
    assert f"does not fit a {settings.camera_width}x{settings.camera_height} video" in r.headers["x-logo-warnings"]
    assert colour_box(_decode(r.content), RED) is None


def test_preview_needs_the_token(client):
    assert client.get("/users/u1/preview.jpg").status_code == 401
    assert client.get("/users/u1/preview.jpg", params={"token": "wrong"}).status_code == 401
    assert client.get("/users/u1/preview.jpg", params={"width": 10}, headers=AUTH).status_code == 422
