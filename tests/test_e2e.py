"""The whole product as a newcomer runs it: `ezrec up`, four real processes, a real broker.

A booking made through the API is recorded, processed with the user's intro and logo,
stored, and downloaded; its status walks confirmed -> completed -> video_processed -> video_uploaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.timeutil import isoformat_z, utc_now
from tests.broker import free_port
from tests.conftest import TOKEN
from tests.media import frames_rgb, make_intro, make_logo_png, probe

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FPS = 15
INTRO_S, BOOKING_S = 2.0, 5.0


@pytest.fixture
def stack(tmp_path, running_broker, camera_id):
    yield from run_stack(tmp_path, running_broker, camera_id)


def run_stack(tmp_path: Path, running_broker, camera_id: str, **extra_env: str):
    """`ezrec up` in tmp_path, yielded once its API answers: (base URL, process, tmp_path)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_"))},
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "CAMERA_ID": camera_id,
        "MQTT_PORT": str(running_broker.port),
        "API_PORT": str(port),
        "API_TOKEN": TOKEN,
        "CAMERA_WIDTH": "320", "CAMERA_HEIGHT": "240", "CAMERA_FPS": str(FPS), "CAMERA_WARMUP_S": "1",
        "ENCODER_PRESET": "ultrafast", "SYSTEM_STATUS_INTERVAL": "2", "VIDEO_WORKER_CHECK_INTERVAL": "2",
        **extra_env,
    }
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"API did not come up:\n{(tmp_path / 'up.log').read_text()}")
    yield base, proc, tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_booking_to_downloaded_video(stack, tmp_path):
    base, proc, workdir = stack
    client = httpx.Client(base_url=base, headers=AUTH, timeout=10)
    intro = make_intro(tmp_path / "intro.mp4", INTRO_S, size=(640, 360), fps=25)
    logo = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(255, 0, 0, 255))
    assert client.put("/users/player1/media/intro", files={"file": ("intro.mp4", intro.read_bytes())}).is_success
    assert client.put("/users/player1/media/logo", files={"file": ("logo.png", logo.read_bytes())}).is_success

    start = (utc_now() + timedelta(seconds=4)).replace(microsecond=0)
    booking = {"id": "e2e-1", "user_id": "player1", "start_time": isoformat_z(start),
               "end_time": isoformat_z(start + timedelta(seconds=BOOKING_S))}
    assert client.post("/bookings", json=booking).status_code == 201

    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = client.get("/bookings/e2e-1").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "video_uploaded":
            break
        time.sleep(0.1)
    log = (workdir / "up.log").read_text()
    assert seen[-1] == "video_uploaded", f"statuses seen {seen}\n{log[-4000:]}"
    order = ["confirmed", "completed", "video_processed", "video_uploaded"]
    assert seen == sorted(seen, key=order.index), f"status went backwards: {seen}"

    [video] = client.get("/videos", params={"booking_id": "e2e-1"}).json()
    download = client.get(f"/videos/{video['id']}/download")
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    out = tmp_path / "downloaded.mp4"
    out.write_bytes(download.content)

    info = probe(out)
    frame = 1 / FPS
    assert info["width"] == 320 and info["height"] == 240 and info["pix_fmt"] == "yuv420p"
    assert abs(info["duration"] - (INTRO_S + BOOKING_S)) <= 2 * frame, info
    assert abs(info["frames"] - round((INTRO_S + BOOKING_S) * FPS)) <= 2, info

    intro_frames = round(INTRO_S * FPS)
    frames = frames_rgb(out, [2, intro_frames + 10, info["frames"] - 3])
    # default logo placement: top-right, 15 % of the width, 2 % margin
    lw = round(320 * 0.15)
    x0, y0 = 320 - round(320 * 0.02) - lw, round(320 * 0.02)
    centre = (slice(y0 + lw // 4 - 3, y0 + lw // 4 + 3), slice(x0 + lw // 2 - 3, x0 + lw // 2 + 3))
    red = np.array([255, 0, 0])
    for i in (intro_frames + 10, info["frames"] - 3):
        patch = frames[i][centre].reshape(-1, 3).mean(axis=0)
        assert np.abs(patch - red).max() < 60, f"logo missing in recording frame {i}: {patch}"
    intro_patch = frames[2][centre].reshape(-1, 3).mean(axis=0)
    assert np.abs(intro_patch - red).max() > 100, "the logo must not cover the intro"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, "ezrec up must stop cleanly on Ctrl-C"
    assert "exited with" not in log, "no service crashed during the run"
