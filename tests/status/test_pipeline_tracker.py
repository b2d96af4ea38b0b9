"""Pipeline facts: queues from the recordings folders, bookings from the schedule, errors and faults from events."""

from __future__ import annotations

import json
from datetime import timedelta

from services.status.pipeline_tracker import PipelineTracker, bookings_around, count_queue
from shared.models import Booking, BookingStatus
from shared.payloads import (
    DeadLetter,
    RecorderFault,
    RecordingFinished,
    RecordingStarted,
    ScheduledBooking,
    ScheduleSnapshot,
    VideoFailed,
)
from shared.schedule_cache import write_snapshot
from shared.timeutil import utc_now


def test_queue_counts_read_the_recordings_folders(tmp_path):
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    assert count_queue(raw, processed).jobs_waiting == 0  # folders not created yet
    (raw / "b2").mkdir(parents=True)
    processed.mkdir()
    for name in ("b1.mp4", "b3.mp4", ".b4.mp4.abc.mp4", "notes.txt"):  # a hidden temp of an atomic write
        (raw / name).write_bytes(b"x")
    for name in ("seg-00000.mp4", "seg-00001.mp4", ".seg-00002.mp4.abc.tmp"):  # the recorder's names
        (raw / "b2" / name).write_bytes(b"x")
    (raw / "b5").mkdir()
    (raw / "b5" / "seg-00000.mp4").write_bytes(b"x")
    for name in ("b0.mp4", ".b9.mp4.tmp.mp4"):
        (processed / name).write_bytes(b"x")
    q = count_queue(raw, processed)
    assert (q.jobs_waiting, q.segments_waiting, q.uploads_pending) == (2, 3, 1)


def _booking(bid: str, start_min: float, minutes: float = 30, status=BookingStatus.confirmed) -> ScheduledBooking:
    start = utc_now().replace(microsecond=0) + timedelta(minutes=start_min)
    return ScheduledBooking(id=bid, user_id="u1", start_time=start, end_time=start + timedelta(minutes=minutes),
                            status=status)


def test_current_and_next_booking_from_the_schedule():
    now = utc_now()
    snap = ScheduleSnapshot(camera_id="c", revision=1, bookings=[
        _booking("later", 120), _booking("soon", 10), _booking("done", -60, 20, BookingStatus.completed),
        _booking("now", -5, 10), _booking("past", -90, 30)])
    current, upcoming = bookings_around(snap, now)
    assert current is not None and current.id == "now"
    assert upcoming is not None and upcoming.id == "soon"
    assert bookings_around(None, now) == (None, None)
    # A booking already marked completed is not "current", unless the recorder still says it records it.
    snap2 = ScheduleSnapshot(camera_id="c", revision=2, bookings=[_booking("x", -5, 10, BookingStatus.completed)])
    assert bookings_around(snap2, now)[0] is None
    assert bookings_around(snap2, now, recording_now="x")[0].id == "x"


def fault(kind: str = "camera_stall", reason: str = "camera disconnected", active: bool = True,
          camera_id: str = "c") -> RecorderFault:
    return RecorderFault(camera_id=camera_id, kind=kind, reason=reason, active=active)


def test_only_camera_kinds_fault_the_camera(tmp_path):
    tracker = PipelineTracker("c", tmp_path / "s.json")
    tracker.on_recorder_fault("t", fault("camera_open", "no camera"))
    tracker.on_recorder_fault("t", fault("disk_low", "900 MB free"))
    view = tracker.view(utc_now())
    assert view.camera_fault == "no camera" and view.last_errors["recorder"].reason == "disk_low: 900 MB free"
    tracker.on_recorder_fault("t", fault("disk_low", "space is back", active=False))
    assert tracker.view(utc_now()).camera_fault == "no camera"  # a disk recovery does not clear the camera
    tracker.on_recorder_fault("t", fault("camera_open", "opened", active=False))
    assert tracker.view(utc_now()).camera_fault is None


def test_events_are_tracked_and_survive_a_restart(tmp_path):
    state = tmp_path / "state" / "status-pipeline.json"
    tracker = PipelineTracker("c", state)
    now = utc_now()
    tracker.on_recording_started("t", RecordingStarted(booking_id="b1", camera_id="c", first_frame_at=now))
    tracker.on_video_failed("ezrec/c/video/failed", VideoFailed(booking_id="b0", element="upload", reason="HTTP 503"))
    tracker.on_deadletter("ezrec/deadletter", DeadLetter(topic="ezrec/c/bookings", service="recorder",
                                                         error="invalid ScheduleSnapshot", payload="{}"))
    tracker.on_deadletter("ezrec/deadletter", DeadLetter(topic="ezrec/other/bookings", service="api",
                                                         error="another camera's", payload="{}"))
    tracker.on_recorder_fault("ezrec/c/recorder/fault", fault())
    view = tracker.view(now)
    assert view.recording_now == "b1" and view.camera_fault == "camera disconnected"
    assert view.last_errors["worker"].reason == "upload: HTTP 503" and view.last_errors["worker"].booking_id == "b0"
    assert view.last_errors["recorder"].reason == "camera_stall: camera disconnected"
    assert "api" not in view.last_errors
    restarted = PipelineTracker("c", state).view(now)
    assert restarted.recording_now == "b1" and restarted.camera_fault == "camera disconnected"
    assert set(restarted.last_errors) == {"worker", "recorder"}
    # The dead letter was the recorder's until the fault replaced it as the recorder's last error.
    tracker.on_recording_finished("t", RecordingFinished(
        booking_id="b1", camera_id="c", user_id="u1", file="b1.mp4", first_frame_at=now, last_frame_at=now,
        frames=1, size_bytes=1))
    tracker.on_recorder_fault("ezrec/c/recorder/fault", fault(reason="frames flow again", active=False))
    view = tracker.view(now)
    assert view.recording_now is None and view.camera_fault is None
    assert view.last_errors["recorder"].reason == "camera_stall: camera disconnected"  # kept for the record


def test_a_recording_start_means_the_camera_works_again(tmp_path):
    tracker = PipelineTracker("c", tmp_path / "s.json")
    tracker.on_recorder_fault("t", fault(reason="camera stalled"))
    tracker.on_recorder_fault("t", fault(reason="another camera's", camera_id="other"))
    assert tracker.view(utc_now()).camera_fault == "camera stalled"
    tracker.on_recording_started("t", RecordingStarted(booking_id="b", camera_id="c", first_frame_at=utc_now()))
    assert tracker.view(utc_now()).camera_fault is None


def test_unreadable_state_file_starts_fresh(tmp_path):
    state = tmp_path / "s.json"
    state.write_text("{not json")
    assert PipelineTracker("c", state).view(utc_now()).recording_now is None


def test_schedule_from_the_cache_file_until_mqtt_brings_a_newer_one(tmp_path):
    cache = tmp_path / "bookings.json"
    start = utc_now() + timedelta(minutes=20)
    cached = Booking(id="cached", user_id="u1", camera_id="c", start_time=start,
                     end_time=start + timedelta(minutes=30))
    snap = write_snapshot(cache, "c", [cached])
    tracker = PipelineTracker("c", tmp_path / "s.json", cache)
    assert tracker.view(utc_now()).next_booking.id == "cached"
    tracker.on_bookings("t", ScheduleSnapshot(camera_id="c", revision=snap.revision - 1, bookings=[]))
    assert tracker.view(utc_now()).next_booking.id == "cached"  # older revision ignored
    tracker.on_bookings("t", ScheduleSnapshot(camera_id="other", revision=snap.revision + 5, bookings=[]))
    assert tracker.view(utc_now()).next_booking.id == "cached"  # another camera's schedule ignored
    tracker.on_bookings("t", ScheduleSnapshot(camera_id="c", revision=snap.revision + 1,
                                              bookings=[_booking("fresh", 5)]))
    assert tracker.view(utc_now()).next_booking.id == "fresh"
    cache.write_text(json.dumps({"schema": "something/else"}))
    assert PipelineTracker("c", tmp_path / "s2.json", cache).view(utc_now()).next_booking is None
