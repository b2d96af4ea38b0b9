"""A booking edited or cancelled while it is being recorded: the change takes effect on the next frame."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.models import BookingIn, BookingStatus
from shared.timeutil import utc_now
from tests.recorder.conftest import booking_json, decoded_frames, frame_times, wait_until, whole_second


def _finished(listener, booking_id: str, timeout: float = 20) -> dict:
    _, payload = listener.wait_for(lambda t, p: t.endswith("/finished") and json.loads(p)["booking_id"] == booking_id,
                                   timeout=timeout)
    return json.loads(payload)


def _started(listener, booking_id: str) -> None:
    listener.wait_for(lambda t, p: t.endswith("/started") and json.loads(p)["booking_id"] == booking_id, timeout=15)


def test_shortened_end_is_honoured_and_a_cancelled_booking_keeps_what_was_recorded(start_recorder, listen):
    env = start_recorder()
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    step = timedelta(seconds=1 / env.settings.camera_fps)
    s = whole_second(1.0)
    a_end, b_start, b_end = s + timedelta(seconds=3), s + timedelta(seconds=3), s + timedelta(seconds=6)
    env.store.create_bookings([BookingIn(id="shorten", user_id="u1", start_time=s, end_time=a_end),
                               BookingIn(id="cancel", user_id="u1", start_time=b_start, end_time=b_end)],
                              env.settings.camera_id)
    env.publish_schedule([booking_json("shorten", s, a_end)])
    _started(events, "shorten")

    new_end = s + timedelta(seconds=1.2)
    env.publish_schedule([booking_json("shorten", s, new_end), booking_json("cancel", b_start, b_end)])
    shortened = _finished(events, "shorten")
    times = frame_times(env.raw / "shorten.mp4")
    assert abs(times[0] - s) < step / 2
    assert abs(times[-1] - (new_end - step)) < step / 2, "the new end time is where the recording stops"
    assert shortened["frames"] == len(times) == decoded_frames(env.raw / "shorten.mp4")
    assert env.store.get_booking("shorten").status == BookingStatus.completed

    _started(events, "cancel")
    assert wait_until(lambda: len(list((env.raw / "cancel").glob("seg-*.mp4"))) >= 2, timeout=10)
    # DELETE while it records: the API ends the booking now (a booking under way is never dropped from the
    # schedule; one that vanishes is kept to its end, see test_schedule_revisions.py)
    cancelled_at = utc_now()
    env.publish_schedule([booking_json("shorten", s, new_end), booking_json("cancel", b_start, cancelled_at)])
    cancelled = _finished(events, "cancel")
    times = frame_times(env.raw / "cancel.mp4")
    assert abs(times[0] - b_start) < step / 2
    assert times[-1] >= cancelled_at - timedelta(seconds=0.5), "what was recorded before the cancel is kept"
    assert times[-1] < b_end - timedelta(seconds=1), "recording stopped at the cancel, not at the old end"
    assert cancelled["frames"] == len(times) == decoded_frames(env.raw / "cancel.mp4")
    assert env.store.get_booking("cancel").status == BookingStatus.completed


def test_extended_end_is_honoured(start_recorder, listen):
    env = start_recorder(segment_seconds=10.0)
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    step = timedelta(seconds=1 / env.settings.camera_fps)
    s = whole_second(1.0)
    env.publish_schedule([booking_json("extend", s, s + timedelta(seconds=1.2))])
    _started(events, "extend")
    new_end = s + timedelta(seconds=2.4)
    env.publish_schedule([booking_json("extend", s, new_end)])
    manifest = _finished(events, "extend")
    times = frame_times(env.raw / "extend.mp4")
    assert abs(times[-1] - (new_end - step)) < step / 2, "recorded on to the new end"
    assert manifest["frames"] == len(times) == round(2.4 * env.settings.camera_fps)


def test_an_overlapping_booking_arriving_mid_recording_is_skipped_not_the_running_one(start_recorder, listen):
    env = start_recorder()
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    step = timedelta(seconds=1 / env.settings.camera_fps)
    s = whole_second(1.0)
    end = s + timedelta(seconds=2.4)
    env.publish_schedule([booking_json("running", s, end)])
    _started(events, "running")
    # Bad data (the API refuses overlaps): it starts earlier, so by start time alone it would win.
    env.publish_schedule([booking_json("running", s, end),
                          booking_json("intruder", s - timedelta(seconds=2), s + timedelta(seconds=5))])
    manifest = _finished(events, "running")
    times = frame_times(env.raw / "running.mp4")
    assert abs(times[0] - s) < step / 2 and abs(times[-1] - (end - step)) < step / 2, "recorded whole"
    assert manifest["frames"] == len(times) == round(2.4 * env.settings.camera_fps)
    # Skipped while it clashes; once "running" is over, what is left of it is recorded: never two at once.
    _finished(events, "intruder")
    intruder = frame_times(env.raw / "intruder.mp4")
    assert intruder[0] >= end, "never two at once: the intruder's footage starts after the running booking's end"
    started = [json.loads(p)["booking_id"] for t, p, _ in events.messages if t.endswith("/started")]
    assert started == ["running", "intruder"], started
