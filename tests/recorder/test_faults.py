"""Camera faults mid-booking: retried with backoff, reported, and the footage on both sides kept in one video."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from services.recorder.camera import Camera, CameraError, CapturedFrame
from services.recorder.pyav_cameras import SyntheticCamera
from shared import failpoints
from shared.models import BookingStatus
from shared.timeutil import utc_now
from tests.recorder.conftest import decoded_frames, frame_times, recording, whole_second

STALL_S = 0.8


class FaultyCamera:
    """The synthetic camera, made to stall (stop delivering) or raise once its frames reach `fault_at`."""

    encoded = None

    def __init__(self, inner: Camera, fault_at: datetime, mode: str) -> None:
        self.inner, self.fault_at, self.mode = inner, fault_at, mode
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps

    def frames(self) -> Iterator[CapturedFrame]:
        for item in self.inner.frames():
            if item.captured_at >= self.fault_at:
                if self.mode == "stall":
                    time.sleep(3 * STALL_S)  # hangs like an unplugged USB camera; the recorder moves on
                else:
                    raise RuntimeError("camera disconnected")
            yield item

    def close(self) -> None:
        self.inner.close()


def test_open_failure_stall_and_crash_are_retried_and_the_footage_joined(start_recorder, listen, make_settings):
    start = whole_second(1.0)
    end = start + timedelta(seconds=5)
    stall_at, crash_at = start + timedelta(seconds=0.8), start + timedelta(seconds=3.2)
    opened: list[str] = []

    def factory() -> Camera:
        opened.append(time.strftime("%X"))
        attempt = len(opened)
        if attempt == 1:
            raise CameraError("device busy")
        camera = SyntheticCamera(320, 240, 15)
        if attempt == 2:
            return FaultyCamera(camera, stall_at, "stall")
        if attempt == 3:
            return FaultyCamera(camera, crash_at, "raise")
        return camera

    env = start_recorder(camera_factory=factory, camera_stall_s=STALL_S, segment_seconds=10.0)
    faults = listen(f"ezrec/{env.settings.camera_id}/recorder/fault")
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    env.book(("faulty", start, end))
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "faulty", timeout=30)

    reports = [json.loads(p) for _, p, _ in faults.messages]
    raised = [(r["kind"], r["booking_id"]) for r in reports if r["active"]]
    assert raised == [("camera_open", "faulty"), ("camera_stall", "faulty"), ("camera_error", "faulty")], reports
    assert all(r["retry_in_s"] and r["retry_in_s"] > 0 for r in reports if r["active"]), "retried with a backoff"
    assert "RuntimeError: camera disconnected" in reports[-2]["reason"] or any(
        "camera disconnected" in r["reason"] for r in reports)
    cleared = [r["kind"] for r in reports if not r["active"]]
    assert cleared.count("camera_open") == 1 and "camera_stall" in cleared and "camera_error" in cleared, \
        "each fault is cleared once frames flow again"
    assert len(opened) == 4

    video = recording(env.raw / "faulty.mp4")
    times = frame_times(video)
    manifest = json.loads(payload)
    assert manifest["frames"] == len(times) == decoded_frames(video), "one playable video"
    s = lambda t: (t - start).total_seconds()  # noqa: E731
    assert any(s(t) < 0.8 for t in times), "footage before the stall"
    assert any(0.8 + STALL_S < s(t) < 3.2 for t in times), "footage between the stall and the crash"
    assert any(s(t) > 3.2 for t in times), "footage after the crash"
    assert not any(0.8 <= s(t) < 0.8 + STALL_S for t in times), "nothing invented during the stall"
    assert times[-1] >= end - timedelta(seconds=0.2)
    assert env.store.get_booking("faulty").status == BookingStatus.completed
    assert env.thread.is_alive(), "a camera fault never takes the recorder down"


def test_a_camera_that_comes_back_mid_booking_is_retried_within_a_second(start_recorder, listen):
    """Found by the soak (seed 7): an RTSP camera down for 5 s at a booking's start was retried after 0.5, 1, 2
    and then 5 s, so the booking lost footage long after the camera was back (or all of it: missed). While a
    booking is due, the wait between attempts is capped (LIVE_RETRY_S), whatever the backoff has reached."""
    from services.recorder.service import LIVE_RETRY_S

    start = whole_second(1.0)
    end = start + timedelta(seconds=7)
    opened: list[float] = []

    def factory() -> Camera:
        opened.append(time.monotonic())
        if len(opened) <= 5:  # 0.5 + 1 + 2 + 5 s of backoff before the 6th attempt without the cap
            raise CameraError("connection refused")
        return SyntheticCamera(320, 240, 15)

    env = start_recorder(camera_factory=factory, segment_seconds=10.0)
    faults = listen(f"ezrec/{env.settings.camera_id}/recorder/fault")
    started = listen(f"ezrec/{env.settings.camera_id}/recording/started")
    env.book(("comeback", start, end))
    _, payload = started.wait_for(lambda t, p: json.loads(p)["booking_id"] == "comeback", timeout=20)
    retries = [json.loads(p)["retry_in_s"] for _, p, _ in faults.messages if json.loads(p)["active"]]
    assert len(retries) == 5 and all(r <= LIVE_RETRY_S for r in retries), retries
    first_frame = datetime.fromisoformat(json.loads(payload)["first_frame_at"])
    assert first_frame < end - timedelta(seconds=1), "footage once the camera was back, well before the end"


def test_a_frozen_synthetic_camera_raises_camera_stall_and_keeps_the_footage_around_it(
        start_recorder, listen, monkeypatch, tmp_path):
    """The synthetic camera's freeze hook (EZREC_TEST_CAMERA_FREEZE_FILE, used by the soak): while the file exists
    no frame comes, the recorder reports camera_stall for the booking and retries; once it is gone the footage
    resumes, and the booking's one video holds the frames before and after the freeze, none during it."""
    freeze = tmp_path / "camera.frozen"
    monkeypatch.setenv(failpoints.FREEZE_ENV, str(freeze))
    start = whole_second(1.0)
    end = start + timedelta(seconds=6)
    freeze_at, thaw_at = start + timedelta(seconds=1.5), start + timedelta(seconds=3.5)

    def freeze_and_thaw() -> None:
        time.sleep(max(0.0, (freeze_at - utc_now()).total_seconds()))
        freeze.touch()
        time.sleep(max(0.0, (thaw_at - utc_now()).total_seconds()))
        freeze.unlink()

    env = start_recorder(camera_stall_s=STALL_S, segment_seconds=10.0)  # the default factory: CAMERA_SOURCE
    assert env.settings.camera_source == "synthetic"
    faults = listen(f"ezrec/{env.settings.camera_id}/recorder/fault")
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    env.book(("frozen", start, end))
    freezer = threading.Thread(target=freeze_and_thaw, daemon=True)
    freezer.start()
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "frozen", timeout=30)
    freezer.join(5)

    reports = [json.loads(p) for _, p, _ in faults.messages]
    stalls = [r for r in reports if r["active"] and r["kind"] == "camera_stall"]
    assert stalls and all(r["booking_id"] == "frozen" and r["retry_in_s"] > 0 for r in stalls), reports
    assert any(r["kind"] == "camera_stall" and not r["active"] for r in reports), "cleared once frames flow again"

    video = recording(env.raw / "frozen.mp4")
    times = frame_times(video)
    assert json.loads(payload)["frames"] == len(times) == decoded_frames(video), "one playable video"
    s = lambda t: (t - start).total_seconds()  # noqa: E731
    assert min(s(t) for t in times) < 0.1 and any(1.0 < s(t) < 1.5 for t in times), "footage up to the freeze"
    assert any(3.5 < s(t) < 4.5 for t in times), "footage soon after the thaw"
    assert not any(1.6 < s(t) < 3.2 for t in times), "nothing invented while frozen"
    assert times[-1] >= end - timedelta(seconds=0.2)
    assert env.store.get_booking("frozen").status == BookingStatus.completed
