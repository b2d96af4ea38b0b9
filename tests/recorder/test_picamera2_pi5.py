"""The Pi 5's camera path, recorder to finished video: Picamera2 hands raw frames (no hardware encoder on a Pi 5),
the recorder blends the logo and encodes once, and the worker finishes the booking by remux: no frame of the
recording is encoded twice. Only picamera2/libcamera are stood in (tests/recorder/pi_standin.py, platform PiSP);
the recorder, worker, API, store and broker are the production code, in one process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest

from services.recorder.pyav_cameras import open_source
from shared import capture_stamp
from shared.timeutil import isoformat_z, utc_now
from tests.conftest import TOKEN
from tests.in_process import services_in_process
from tests.media import make_intro, make_logo_png, open_media
from tests.recorder import pi_standin
from tests.recorder.conftest import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FPS = 15
INTRO_S = 1.0
BOOKING_S = 3.0


@pytest.fixture
def pi5(monkeypatch: pytest.MonkeyPatch) -> pi_standin.PiState:
    state = pi_standin.install(monkeypatch)
    state.platform = pi_standin.Platform.PISP
    return state


def test_on_a_pi_5_the_camera_gives_raw_frames_and_on_a_pi_4_its_hardware_encoder_is_kept(monkeypatch, pi5):
    camera = open_source("picamera2", 320, 240, FPS, 2.0, 0, 0)
    try:
        assert camera.encoded is None, "a Pi 5 has no hardware encoder: the recorder encodes the raw frames"
        [item] = [next(iter(camera.frames()))]
        assert (item.frame.width, item.frame.height, item.frame.format.name) == (320, 240, "yuv420p")
        assert item.captured_at.tzinfo is not None
        assert pi5.opened[0].encoder is None, "Picamera2's own (software) encoder is not started"
    finally:
        camera.close()
    assert pi5.opened[0].stopped and pi5.opened[0].closed

    pi5.platform = pi_standin.Platform.VC4
    camera = open_source("picamera2", 320, 240, FPS, 2.0, 0, 0)
    try:
        assert camera.encoded is not None and pi5.opened[1].encoder is not None, "a Pi 4 keeps its hardware encoder"
    finally:
        camera.close()
    camera = open_source("picamera2:frames", 320, 240, FPS, 2.0, 0, 0)  # forced either way
    try:
        assert camera.encoded is None
    finally:
        camera.close()


@pytest.fixture
def pi5_court(make_settings, listen, pi5, tmp_path) -> Iterator[tuple]:
    settings = make_settings(camera_source="picamera2", camera_fps=FPS, segment_seconds=1.0, camera_warmup_s=1.0)
    events = listen(f"ezrec/{settings.camera_id}/#")
    with services_in_process(settings) as running:
        yield settings, running.store, running.api, events


def test_a_pi_5_booking_is_finished_by_remux_with_the_logo_drawn_once_at_capture(pi5_court, tmp_path):
    settings, store, api, events = pi5_court
    intro = make_intro(tmp_path / "intro.mp4", INTRO_S, size=(640, 360), fps=25)
    logo = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(255, 0, 0, 255))
    assert api.put("/users/player1/media/intro", headers=AUTH,
                   files={"file": ("intro.mp4", intro.read_bytes())}).is_success
    assert api.put("/users/player1/media/logo", headers=AUTH,
                   files={"file": ("logo.png", logo.read_bytes())}).is_success
    start = (utc_now() + timedelta(seconds=4)).replace(microsecond=0)
    body = {"id": "pi5", "user_id": "player1", "start_time": isoformat_z(start),
            "end_time": isoformat_z(start + timedelta(seconds=BOOKING_S))}
    assert api.post("/bookings", json=body, headers=AUTH).status_code == 201

    def payloads(suffix: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in list(events.messages) if t.endswith(suffix)]

    assert wait_until(lambda: any(p["booking_id"] == "pi5" for p in payloads("/video/uploaded")), timeout=60), \
        payloads("/video/failed")
    [processed] = [p for p in payloads("/video/processed") if p["booking_id"] == "pi5"]
    assert processed["route"] == "remux" and not processed["route_reasons"], processed
    segments = [p for p in payloads("/recording/segment") if p["booking_id"] == "pi5"]
    assert len(segments) >= 3

    [video] = store.list_videos(booking_id="pi5")
    path = store.local_object_path("videos", video.storage_path)
    with open_media(path) as c:
        fmt, logos = capture_stamp.read(dict(c.metadata))
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.audio, "the intro's audio (then silence) is carried"
    assert abs(len(frames) - round((INTRO_S + BOOKING_S) * FPS)) <= 2, len(frames)
    recorded = frames[round(INTRO_S * FPS) + 2:]
    corner = np.stack([f[6:30, -70:-10].reshape(-1, 3).mean(axis=0) for f in recorded])
    assert np.all(corner[:, 0] > 180) and np.all(corner[:, 1] < 80), "the red logo is on every recorded frame"
    intro_corner = frames[2][6:30, -70:-10].reshape(-1, 3).mean(axis=0)
    assert intro_corner[0] < 180 or intro_corner[1] > 80, "no logo on the intro"
