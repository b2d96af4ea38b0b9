"""DELETE on a booking that is recording, with the real recorder process: it stops, keeps what it recorded
and marks the booking completed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import httpx

from shared.recordings.layout import BookingDir
from shared.timeutil import isoformat_z, utc_now
from tests.api.conftest import AUTH


def test_cancelling_a_recording_booking_ends_it_and_keeps_the_recording(live_api, settings, tmp_path):
    server = live_api()
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "CAMERA_ID": settings.camera_id,
           "MQTT_PORT": str(settings.mqtt_port), "API_TOKEN": "unused-by-the-recorder", "CAMERA_WIDTH": "320",
           "CAMERA_HEIGHT": "240", "CAMERA_FPS": "15", "CAMERA_WARMUP_S": "1", "BOOKING_CHECK_INTERVAL": "1",
           "SEGMENT_SECONDS": "1", "LOG_LEVEL": "INFO"}
    log = open(tmp_path / "recorder.log", "w")  # noqa: SIM115 - closed in finally
    recorder = subprocess.Popen([sys.executable, "-m", "services.cli", "recorder"], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        start = utc_now() + timedelta(seconds=2)
        created = httpx.post(f"{server.url}/bookings", headers=AUTH, json={
            "id": "cut-short", "user_id": "u1", "start_time": isoformat_z(start),
            "end_time": isoformat_z(start + timedelta(minutes=5))})
        assert created.status_code == 201, created.text
        segments = settings.raw_dir / "cut-short"
        deadline = time.monotonic() + 30
        while not (segments.is_dir() and len(list(segments.glob("seg-*.mp4"))) >= 3):
            assert time.monotonic() < deadline, f"recorder did not record: {(tmp_path / 'recorder.log').read_text()}"
            time.sleep(0.2)

        ended = httpx.delete(f"{server.url}/bookings/cut-short", headers=AUTH)
        assert ended.status_code == 200, ended.text
        deadline = time.monotonic() + 30
        while (booking := httpx.get(f"{server.url}/bookings/cut-short", headers=AUTH).json())["status"] == "confirmed":
            assert time.monotonic() < deadline, f"not completed: {(tmp_path / 'recorder.log').read_text()}"
            time.sleep(0.3)
        assert booking["status"] == "completed" and booking["end_time"] == ended.json()["end_time"]
        finished = BookingDir(settings.raw_dir, "cut-short").read_finished()  # the segments are the recording
        assert finished is not None
        seconds = (finished.last_frame_at - finished.first_frame_at).total_seconds()
        assert 2.0 <= seconds < 60, seconds  # what was recorded until the cancel, not the five booked minutes
    finally:
        recorder.terminate()
        recorder.wait(15)
        log.close()
