"""Issue 19 item 1 as a user met it: a sideways IP camera (CAMERA_SOURCE=file:..., the RTSP/HTTP remux path)
with CAMERA_ROTATION=90, through `ezrec up`. The video the user downloads must show the court upright:
the camera's display matrix kept, the intro and the logo upright with it.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import httpx
import pytest

from shared.timeutil import isoformat_z, utc_now
from tests.conftest import TOKEN
from tests.media import make_logo_png
from tests.test_e2e import run_stack
from tests.video_worker.test_rotation import FPS, RED, assert_upright, camera_picture, encode_file, intro_picture

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOOKING_S = 4.0


@pytest.fixture
def sideways_stack(tmp_path, running_broker, camera_id):
    camera = encode_file(tmp_path / "camera.mp4", camera_picture(), 3 * FPS, FPS)
    yield from run_stack(tmp_path, running_broker, camera_id, CAMERA_SOURCE=f"file:{camera}", CAMERA_ROTATION="90")


def test_a_sideways_remuxed_camera_gives_an_upright_video(sideways_stack, tmp_path):
    base, proc, workdir = sideways_stack
    client = httpx.Client(base_url=base, headers=AUTH, timeout=10)
    intro = encode_file(tmp_path / "intro.mp4", intro_picture(), FPS, FPS)
    logo = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(*RED, 255))
    assert client.put("/users/player1/media/intro", files={"file": ("intro.mp4", intro.read_bytes())}).is_success
    assert client.put("/users/player1/media/logo", files={"file": ("logo.png", logo.read_bytes())}).is_success

    start = (utc_now() + timedelta(seconds=4)).replace(microsecond=0)
    booking = {"id": "sideways", "user_id": "player1", "start_time": isoformat_z(start),
               "end_time": isoformat_z(start + timedelta(seconds=BOOKING_S))}
    assert client.post("/bookings", json=booking).status_code == 201
    deadline = time.monotonic() + 90
    status = ""
    while time.monotonic() < deadline and status != "video_uploaded":
        status = client.get("/bookings/sideways").json()["status"]
        time.sleep(0.2)
    assert status == "video_uploaded", (workdir / "up.log").read_text()[-4000:]

    [video] = client.get("/videos", params={"booking_id": "sideways"}).json()
    out = tmp_path / "downloaded.mp4"
    out.write_bytes(client.get(f"/videos/{video['id']}/download").content)
    assert_upright(out, 90, FPS, matrix=90)

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
