"""The recorder's judgement of presses (services/recorder/highlight_presses.py), on the real broker: spans, extension,
the schedule's current end, clocks, refusals."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.recorder.highlight_presses import HighlightDesk
from shared.bus import MqttBus
from shared.payloads import HighlightClip, HighlightRefused, HighlightRequest, ScheduledBooking, ScheduleSnapshot
from shared.recordings.layout import BookingDir
from shared.timeutil import utc_now

T0 = (utc_now() - timedelta(seconds=100)).replace(microsecond=0)


@pytest.fixture
def desk(make_settings, listen):
    settings = make_settings(highlight_seconds=30, highlight_after_s=3)
    booking = ScheduledBooking(id="b1", user_id="u1", start_time=T0, end_time=T0 + timedelta(seconds=120),
                               status="confirmed")
    BookingDir(settings.raw_dir, "b1").ensure_meta(booking, origin=T0)
    schedule = {"snapshot": ScheduleSnapshot(camera_id=settings.camera_id, revision=1, bookings=[booking])}
    recording = {"now": "b1"}
    bus = MqttBus(settings, "recorder")
    bus.start()
    assert bus.wait_connected(10)
    events = listen(f"ezrec/{settings.camera_id}/highlight/#")
    yield HighlightDesk(settings, bus, lambda: recording["now"], lambda: schedule["snapshot"]), recording, \
        schedule, events
    bus.stop()


def _press(desk: HighlightDesk, at_s: float, **fields) -> HighlightClip | HighlightRefused:
    at = T0 + timedelta(seconds=at_s)
    return desk.press(HighlightRequest(sent_at=at, **fields), now=at)


def test_presses_make_spans_within_the_booking_and_extend_the_open_clip(desk):
    desk, _, _, events = desk
    first = _press(desk, 10)
    assert (first.start_at, first.end_at) == (T0, T0 + timedelta(seconds=13))  # 30 s asked, the booking began at 0
    again = _press(desk, 12, request_id="r2")  # inside the span: the same clip, later end
    assert (again.clip_id, again.presses, again.end_at) == (first.clip_id, 2, T0 + timedelta(seconds=15))
    assert again.request_ids == ["r2"]
    later = _press(desk, 40, seconds=5, after_s=0)
    assert later.clip_id != first.clip_id
    assert (later.start_at, later.end_at) == (T0 + timedelta(seconds=35), T0 + timedelta(seconds=40))
    last = _press(desk, 119)
    assert last.end_at == T0 + timedelta(seconds=120)  # never past the booking's end
    events.wait_for(lambda t, p: t.endswith("/highlight/clip") and json.loads(p)["presses"] == 2, 10)


def test_the_schedules_current_end_counts(desk):
    """A booking extended while it records: a press after its first end is still in it."""
    desk, _, schedule, _ = desk
    assert isinstance(_press(desk, 125), HighlightRefused)
    booking = schedule["snapshot"].bookings[0].model_copy(update={"end_time": T0 + timedelta(seconds=180)})
    schedule["snapshot"] = schedule["snapshot"].model_copy(update={"bookings": [booking]})
    clip = _press(desk, 125)
    assert isinstance(clip, HighlightClip) and clip.end_at == T0 + timedelta(seconds=128)


def test_refusals_say_why(desk):
    desk, recording, _, events = desk
    other = _press(desk, 10, booking_id="someone-else", request_id="r9")
    assert isinstance(other, HighlightRefused) and other.code == "other_booking" and other.request_id == "r9"
    recording["now"] = None
    idle = _press(desk, 10)
    assert isinstance(idle, HighlightRefused) and idle.code == "not_recording"
    events.wait_for(lambda t, p: t.endswith("/highlight/refused") and json.loads(p)["code"] == "not_recording", 10)


def test_an_old_request_is_judged_when_it_arrives(desk):
    """A request queued at the broker (the recorder was restarting) carries an old sent_at: its arrival counts."""
    desk, _, _, _ = desk
    arrival = T0 + timedelta(seconds=50)
    clip = desk.press(HighlightRequest(sent_at=arrival - timedelta(seconds=40)), now=arrival)
    assert clip.end_at == arrival + timedelta(seconds=3)


def test_a_restarted_recorder_still_extends_the_open_clip(desk, make_settings):
    desk, recording, schedule, _ = desk
    first = _press(desk, 60)
    restarted = HighlightDesk(desk.settings, desk.bus, lambda: recording["now"], lambda: schedule["snapshot"])
    again = _press(restarted, 62)
    assert (again.clip_id, again.presses, again.start_at) == (first.clip_id, 2, first.start_at)
