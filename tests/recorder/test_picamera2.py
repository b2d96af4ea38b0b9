"""The Pi camera path (Picamera2Camera) run for real, with only the camera itself stood in.

picamera2 and libcamera cannot exist off a Pi, so tests/recorder/pi_standin.py replaces them with
modules that keep picamera2's wire contract (Annex-B H.264 from an encoder thread, sensor timestamps
in µs); everything from picam.py on — the feed, the segment writer's remux, the join, the broker — is
the production code.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import av
import pytest

from services.recorder.camera import CameraError
from services.recorder.pyav_cameras import open_source
from shared.models import BookingStatus
from tests.recorder import pi_standin
from tests.recorder.conftest import decoded_frames, frame_times, recording, wait_until, whole_second

PI_FAULT = "Camera __init__ sequence did not complete"


@pytest.fixture
def pi(monkeypatch: pytest.MonkeyPatch) -> pi_standin.PiState:
    return pi_standin.install(monkeypatch)


def test_a_booking_from_the_pi_camera_is_remuxed_whole_and_on_time(start_recorder, listen, pi):
    env = start_recorder(camera_source="picamera2", camera_rotation=180, segment_seconds=1.0)
    fps = env.settings.camera_fps
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    start = whole_second(1.0)
    end = start + timedelta(seconds=2.4)
    env.book(("pi", start, end))
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "pi", timeout=25)
    manifest = json.loads(payload)
    video = recording(env.raw / "pi.mp4")

    camera = pi.opened[0]
    assert camera.config is not None
    assert camera.config["transform"] == pi_standin.Transform(hflip=True, vflip=True), \
        "CAMERA_ROTATION=180 is done by the ISP: hflip + vflip"
    assert camera.config["main"] == {"size": (320, 240), "format": "YUV420"}
    assert camera.config["controls"]["FrameRate"] == fps
    assert camera.encoder is not None and camera.encoder.repeat and camera.encoder.iperiod == fps
    assert camera.keyframes_with_headers >= 3, "the stand-in kept the contract: SPS/PPS with every keyframe"

    times = frame_times(video)
    period = timedelta(seconds=1 / fps)
    assert start - timedelta(seconds=1.1) <= times[0] < start + period, \
        "starts on the keyframe at or before the start (the GOP kept as pre-roll)"
    assert end - period <= times[-1] < end, "the last frame is the last one captured before the end"
    assert manifest["frames"] == len(times) == decoded_frames(video), "every frame decodes"
    steps = {round((b - a).total_seconds() * fps, 3) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {1.0}, f"no frame lost or doubled across the 1 s segments: {steps}"
    assert manifest["segments"] >= 3
    with av.open(str(video)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (320, 240)
        assert frame.rotation == 0, "the ISP already flipped: no display matrix on top"
    assert env.store.get_booking("pi").status == BookingStatus.completed
    assert wait_until(lambda: camera.stopped and camera.closed, timeout=5), "the camera is released after"


def test_a_camera_that_fails_to_start_is_a_camera_error(pi):
    pi.init_error = RuntimeError(PI_FAULT)
    with pytest.raises(CameraError, match=PI_FAULT):
        open_source("picamera2", 320, 240, 15, 1.0)


def test_a_pi_camera_failing_to_start_is_a_retried_fault_not_a_crash(start_recorder, listen, pi):
    pi.init_error = RuntimeError(PI_FAULT)
    env = start_recorder(camera_source="picamera2")
    faults = listen(f"ezrec/{env.settings.camera_id}/recorder/fault")
    start = whole_second(1.0)
    env.book(("no-camera", start, start + timedelta(seconds=2)))
    faults.wait_for(lambda t, p: json.loads(p)["active"], timeout=15)
    assert wait_until(lambda: pi.attempts >= 2, timeout=10), "retried with a backoff"
    reports = [json.loads(p) for _, p, _ in faults.messages]
    first = reports[0]
    assert (first["kind"], first["booking_id"], first["active"]) == ("camera_open", "no-camera", True), reports
    assert PI_FAULT in first["reason"] and first["retry_in_s"] > 0
    assert env.thread.is_alive(), "a missing camera never takes the recorder down"


def test_a_camera_that_fails_after_opening_is_released_before_the_retry(pi):
    pi.configure_error = RuntimeError("Failed to configure: device busy")
    with pytest.raises(CameraError, match="device busy"):
        open_source("picamera2", 320, 240, 15, 1.0)
    assert pi.opened and pi.opened[0].closed, "a half-opened camera is closed, not left to the garbage collector"


def test_capture_times_follow_a_wall_clock_step_and_keep_exact_steps_otherwise(pi, monkeypatch):
    """A Pi has no RTC: NTP may step the clock during a session; the sensor's own steps stay exact."""
    camera = open_source("picamera2", 320, 240, 15, 1.0)
    try:
        frames = camera.frames()
        before = [next(frames).captured_at for _ in range(10)]
        steps = {round((b - a).total_seconds() * 15, 3) for a, b in zip(before, before[1:], strict=False)}
        assert steps == {1.0}, steps
        real = time.time
        monkeypatch.setattr("services.recorder.picam.time.time", lambda: real() + 3600)
        after = [next(frames).captured_at for _ in range(10)]
        assert abs((after[-1] - datetime.now(UTC)).total_seconds() - 3600) < 1.0, "re-anchored to the new clock"
    finally:
        camera.close()


def test_frames_dropped_while_the_recorder_is_behind_mark_the_next_one_as_after_a_gap(pi):
    """The queue holds 4 s; past that the next packet says so, and the remux restarts at a keyframe."""
    camera = open_source("picamera2", 320, 240, 15, 1.0)
    try:
        time.sleep(4.8)  # nobody reads: the 60-frame queue fills and frames are dropped
        frames = camera.frames()
        seen = [next(frames) for _ in range(75)]
        gaps = [i for i, item in enumerate(seen) if item.after_gap]
        assert gaps and gaps[0] >= 59, f"the first packet after the drop is marked: {gaps}"
        assert all(not item.after_gap for item in seen[:gaps[0]])
    finally:
        camera.close()
