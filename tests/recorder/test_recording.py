"""Scheduled recording: the exact window, segments marked finished and their manifest, back-to-back bookings."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from services.recorder.schedule_intake import LooseSchedule
from services.recorder.schedule_source import ScheduleSource
from shared.models import BookingStatus
from tests.recorder.conftest import decoded_frames, finished, frame_times, whole_second


def test_records_the_window_exactly_in_segments_and_marks_them_finished(start_recorder, listen):
    env = start_recorder()
    cam = env.settings.camera_id
    events = listen(f"ezrec/{cam}/recording/#")
    start = whole_second(1.0)
    end = start + timedelta(seconds=2.4)
    env.book(("exact", start, end))

    _, payload = events.wait_for(lambda t, p: t.endswith("/finished") and json.loads(p)["booking_id"] == "exact",
                                 timeout=25)
    manifest = json.loads(payload)
    raw = env.raw / "exact.mp4"
    assert manifest["file"] == "exact" and finished(raw), "the segment folder is the recording, marked finished"
    assert not raw.exists(), "no joined copy: each recorded byte is written once"
    folder = env.raw / "exact"
    assert manifest["size_bytes"] == sum(p.stat().st_size for p in folder.glob("seg-*.mp4"))

    fps = env.settings.camera_fps
    times = frame_times(raw)
    assert abs((times[0] - start).total_seconds()) < 0.5 / fps, "first frame is the booking's first instant"
    assert abs((times[-1] - (end - timedelta(seconds=1 / fps))).total_seconds()) < 0.5 / fps
    assert len(times) == round(2.4 * fps) == manifest["frames"] == decoded_frames(raw)
    steps = {round((b - a).total_seconds() * fps, 3) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {1.0}, f"no frame lost or doubled across segment joins: {steps}"
    assert manifest["first_frame_at"].startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))

    segments = [json.loads(p) for t, p, _ in events.messages if t.endswith("/segment")]
    assert [s["index"] for s in segments] == [0, 1, 2], "1 s segments over 2.4 s"
    assert manifest["segments"] == 3
    assert all(s["file"] == f"exact/seg-{s['index']:05d}.mp4" and s["camera_id"] == cam and s["user_id"] == "u1"
               for s in segments)
    assert sum(s["frames"] for s in segments) == len(times)
    assert segments[0]["start_at"] == manifest["first_frame_at"]
    assert segments[-1]["end_at"] == manifest["last_frame_at"]
    started = [json.loads(p) for t, p, _ in events.messages if t.endswith("/started")]
    assert started and started[0]["first_frame_at"] == manifest["first_frame_at"]

    for seg in sorted(folder.glob("seg-*.mp4")):
        with open(seg, "rb") as fh:
            head = fh.read(64 * 1024)
        assert 0 <= head.find(b"moov") < head.find(b"mdat"), f"{seg.name}: its header first, playable on its own"
    assert env.store.get_booking("exact").status == BookingStatus.completed


def test_back_to_back_bookings_make_two_complete_files_with_no_gap(start_recorder, listen):
    env = start_recorder(segment_seconds=10.0)
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    a = whole_second(1.0)
    b = a + timedelta(seconds=2)
    env.book(("first", a, b), ("second", b, b + timedelta(seconds=2)))
    finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "second", timeout=25)
    first = frame_times(env.raw / "first.mp4")
    second = frame_times(env.raw / "second.mp4")
    step = timedelta(seconds=1 / env.settings.camera_fps)
    assert first[-1] < b <= second[0]
    assert second[0] - first[-1] == step, "exactly one frame period between the two files: nothing lost"
    assert len(first) == len(second) == 2 * env.settings.camera_fps


def test_another_cameras_schedule_is_ignored(tmp_path):
    source = ScheduleSource(tmp_path / "bookings.json", "cam-here", 240)
    start = whole_second(1.0)
    other = LooseSchedule(camera_id="cam-elsewhere", revision=5, bookings=[
        {"id": "elsewhere", "user_id": "u1", "start_time": start.isoformat(),
         "end_time": (start + timedelta(seconds=1)).isoformat(), "status": "confirmed"}])
    assert source.offer(other, "test") is False
    assert source.current() is None and not source.changed.is_set()


def test_a_booking_published_while_idle_is_recorded_on_time_without_polling(start_recorder, listen):
    """Event driven: with the safety re-check ten minutes away, only the snapshot itself can start it."""
    env = start_recorder(booking_check_interval=600.0)
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    time.sleep(1.5)  # the recorder has settled into its idle wait before the booking exists
    start = whole_second(1.0)
    end = start + timedelta(seconds=1.2)
    env.book(("evented", start, end))
    _, payload = events.wait_for(lambda t, p: t.endswith("/finished") and json.loads(p)["booking_id"] == "evented",
                                 timeout=20)
    times = frame_times(env.raw / "evented.mp4")
    fps = env.settings.camera_fps
    assert abs((times[0] - start).total_seconds()) < 0.5 / fps, "first frame on the booking's first instant"
    assert json.loads(payload)["frames"] == len(times) == round(1.2 * fps)
