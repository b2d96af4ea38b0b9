"""All scheduling is on aware UTC: midnight and daylight-saving changes need no special case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.recorder.schedule_intake import LooseSchedule, judge, judge_booking
from services.recorder.schedule_plan import active_at, camera_due, recordable, seconds_until_due

BERLIN = ZoneInfo("Europe/Berlin")
WARMUP = timedelta(seconds=3)


def _booking(booking_id: str, start: str, end: str) -> dict:
    return {"id": booking_id, "user_id": "u1", "start_time": start, "end_time": end, "status": "confirmed"}


def _plan(*raw: dict, now: datetime) -> list:
    snapshot, rejected = judge(LooseSchedule(camera_id="c", revision=1, bookings=list(raw)), max_minutes=240)
    assert not rejected
    return recordable(snapshot.bookings, now, set())


def test_a_booking_across_midnight_utc_is_planned_active_and_ended_on_time():
    raw = _booking("late", "2026-11-25T23:59:30Z", "2026-11-26T00:00:30Z")
    before = datetime(2026, 11, 25, 23, 59, 26, tzinfo=UTC)
    plan = _plan(raw, now=before)
    assert [b.id for b in plan] == ["late"]
    assert not camera_due(plan, before, WARMUP) and seconds_until_due(plan, before, WARMUP) == 1.0
    assert camera_due(plan, before + timedelta(seconds=1), WARMUP)
    after_midnight = datetime(2026, 11, 26, 0, 0, 10, tzinfo=UTC)
    assert active_at(plan, after_midnight).id == "late", "still on after the date changed"
    assert active_at(plan, datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)) is None, "ends exactly at its end"
    assert _plan(raw, now=datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)) == [], "over once the end has passed"


def test_a_booking_given_in_a_local_offset_is_compared_in_utc():
    # 19:00 in New York (UTC-5 in November) is midnight UTC: naive comparison would be 5 hours off.
    raw = _booking("ny", "2026-11-25T19:00:00-05:00", "2026-11-25T19:01:00-05:00")
    plan = _plan(raw, now=datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    assert plan[0].start_time == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    assert active_at(plan, datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)).id == "ny"
    assert active_at(plan, datetime(2026, 11, 25, 19, 0, 30, tzinfo=UTC)) is None


def test_the_repeated_hour_when_berlin_falls_back_is_two_distinct_hours():
    # 2026-10-25: clocks go from 03:00 CEST (+02:00) back to 02:00 CET (+01:00); 02:30 happens twice.
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1)
    assert first.isoformat().endswith("+02:00") and second.isoformat().endswith("+01:00")
    raw = _booking("night", first.isoformat(), second.isoformat())
    booking = judge_booking(raw, max_minutes=240)
    assert booking.end_time - booking.start_time == timedelta(hours=1), "an hour long, not zero"
    assert booking.start_time == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)

    plan = _plan(raw, now=datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    assert active_at(plan, datetime(2026, 10, 25, 0, 29, 59, tzinfo=UTC)) is None
    assert active_at(plan, datetime(2026, 10, 25, 1, 0, tzinfo=UTC)).id == "night", "on during the repeated hour"
    assert active_at(plan, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) is None


def test_back_to_back_bookings_across_the_spring_forward_gap_hand_over_exactly():
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 01:30+01:00 -> 03:30+02:00 is one hour.
    a = _booking("a", "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00")
    b = _booking("b", "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00+02:00")
    plan = _plan(a, b, now=datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert [x.id for x in plan] == ["a", "b"], "no overlap once both are in UTC"
    assert plan[0].end_time - plan[0].start_time == timedelta(hours=1)
    handover = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert active_at(plan, handover - timedelta(microseconds=1)).id == "a"
    assert active_at(plan, handover).id == "b"


@pytest.mark.parametrize("start", ["2026-10-25T02:30:00", "2026-10-25 02:30"])
def test_a_time_without_an_offset_is_refused_not_guessed(start):
    with pytest.raises(ValueError, match="timezone"):
        judge_booking(_booking("naive", start, "2026-10-25T03:30:00+01:00"), max_minutes=240)


def test_overlapping_bookings_in_different_offsets_are_caught():
    # 12:00+02:00 == 10:00Z overlaps 10:30Z..11:00Z only when compared in UTC.
    a = _booking("a", "2026-06-01T12:00:00+02:00", "2026-06-01T13:00:00+02:00")
    b = _booking("b", "2026-06-01T10:30:00Z", "2026-06-01T11:00:00Z")
    plan = _plan(a, b, now=datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    assert [x.id for x in plan] == ["a"], "the later overlapping booking is skipped, never recorded at once"


def test_the_booking_being_recorded_keeps_its_place_against_an_earlier_newcomer():
    a = _booking("a", "2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z")
    b = _booking("b", "2026-06-01T09:30:00Z", "2026-06-01T10:30:00Z")  # shows up while "a" records
    c = _booking("c", "2026-06-01T11:00:00Z", "2026-06-01T11:30:00Z")
    snapshot, _ = judge(LooseSchedule(camera_id="c", revision=1, bookings=[a, b, c]), max_minutes=240)
    now = datetime(2026, 6, 1, 10, 5, tzinfo=UTC)
    assert [x.id for x in recordable(snapshot.bookings, now, set())] == ["b", "c"]  # nothing running: first wins
    assert [x.id for x in recordable(snapshot.bookings, now, set(), recording="a")] == ["a", "c"]
