"""Snapshots the recorder cannot reconcile never end a recording, drop a booking or freeze the schedule.

Real broker, real recorder, real files: a forged retained snapshot with a huge revision, a publisher
that starts again below the revision the recorder holds (a fresh DATA_DIR after the clock ran ahead),
and a snapshot that no longer lists the booking being recorded. See docs/schedule-revisions.md.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish

from shared.models import Booking, BookingStatus
from shared.schedule_cache import SCHEMA, write_snapshot
from shared.schedule_revision import MAX_AHEAD, micros
from shared.timeutil import isoformat_z, utc_now
from tests.recorder.conftest import booking_json, frame_times, wait_until, whole_second
from tests.recorder.test_schedule_changes import _finished, _started

FORGED_REVISION = 9_000_000_000_000_000_000  # 9e18 µs: the year 2255


def _publish_raw(env, revision: int, bookings: list[dict]) -> None:
    camera = env.settings.camera_id
    payload = {"v": 1, "sent_at": isoformat_z(utc_now()), "camera_id": camera, "revision": revision,
               "bookings": bookings}
    mqtt_publish.single(f"ezrec/{camera}/bookings", json.dumps(payload), qos=1, retain=True,
                        hostname="127.0.0.1", port=env.settings.mqtt_port, protocol=mqtt.MQTTv5)


def _assert_whole_slot(env, booking_id: str, start, end) -> None:
    times = frame_times(env.raw / f"{booking_id}.mp4")
    step = timedelta(seconds=1 / env.settings.camera_fps)
    assert abs(times[0] - start) < step / 2, f"{booking_id}: first frame {times[0]} not at {start}"
    assert abs(times[-1] - (end - step)) < step / 2, f"{booking_id}: recorded until {times[-1]}, booked until {end}"


def test_a_forged_huge_revision_neither_ends_the_recording_nor_hides_later_snapshots(start_recorder, listen, caplog):
    caplog.set_level(logging.INFO, logger="services.recorder.schedule_source")
    env = start_recorder()
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    deadletters = listen("ezrec/deadletter")
    s = whole_second(1.0)
    end = s + timedelta(seconds=3)
    env.book(("played", s, end))
    _started(events, "played")

    _publish_raw(env, FORGED_REVISION, [])  # retained: every later subscriber gets it too
    _, letter = deadletters.wait_for(lambda t, p: "implausible" in json.loads(p)["error"], timeout=10)
    assert json.loads(letter)["topic"] == f"ezrec/{env.settings.camera_id}/bookings"
    assert env.recorder.recording_now == "played"
    assert env.store.get_booking("played").status == BookingStatus.confirmed, "not marked complete early"
    assert any("ignored schedule revision" in r.getMessage() and "implausible" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)

    # the API's next change (revision from the clock, far below 9e18) is followed at once
    later = end + timedelta(seconds=1)
    env.book(("next", later, later + timedelta(seconds=1)))
    assert wait_until(lambda: "next" in {b.id for b in env.recorder.source.current().bookings}, timeout=5)

    _finished(events, "played")
    _assert_whole_slot(env, "played", s, end)
    _finished(events, "next")
    _assert_whole_slot(env, "next", later, later + timedelta(seconds=1))
    assert env.store.get_booking("played").status == BookingStatus.completed


def test_a_publisher_starting_again_below_the_held_revision_is_followed(start_recorder, listen, caplog):
    """The retained snapshot came from an API whose clock ran an hour ahead; its DATA_DIR is gone and the
    fresh API counts from today's clock, far below. The recorder must follow the fresh one."""
    caplog.set_level(logging.INFO, logger="services.recorder.schedule_source")
    env = start_recorder()
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    ahead = micros(utc_now() + timedelta(hours=1))
    _publish_raw(env, ahead, [])
    assert wait_until(lambda: env.recorder.source.current() is not None
                      and env.recorder.source.current().revision == ahead, timeout=10), \
        "with nothing else, even a revision ahead of the clock is a schedule"

    s = whole_second(1.0)
    end = s + timedelta(seconds=2)
    env.book(("fresh", s, end))  # the fresh API: no cache file before, revision = now
    assert wait_until(lambda: "fresh" in {b.id for b in env.recorder.source.current().bookings}, timeout=5), \
        "the fresh publisher's schedule replaces the one ahead of the clock"
    _finished(events, "fresh")
    _assert_whole_slot(env, "fresh", s, end)
    assert any("ahead of the clock" in r.getMessage() for r in caplog.records)


def test_a_snapshot_without_the_booking_under_way_does_not_end_it(start_recorder, listen, caplog):
    """A store that lost the booking (wiped, restored from backup, a second API) publishes a newer schedule
    without it. The API itself ends a booking by moving its end (DELETE mid-slot), never by dropping it."""
    caplog.set_level(logging.INFO, logger="services.recorder.schedule_source")
    env = start_recorder()
    events = listen(f"ezrec/{env.settings.camera_id}/recording/#")
    s = whole_second(1.0)
    end = s + timedelta(seconds=3)
    env.book(("kept", s, end))
    _started(events, "kept")

    later = end + timedelta(seconds=1)
    env.publish_schedule([booking_json("other", later, later + timedelta(seconds=1))])
    assert wait_until(lambda: "other" in {b.id for b in env.recorder.source.current().bookings}, timeout=5)
    time.sleep(0.5)
    assert env.recorder.recording_now == "kept", "still recording the booking under way"
    assert any("kept until its end" in r.getMessage() for r in caplog.records)

    _finished(events, "kept")
    _assert_whole_slot(env, "kept", s, end)
    _finished(events, "other")
    env.publish_schedule([booking_json("other", later, later + timedelta(seconds=1))])
    assert wait_until(lambda: {b.id for b in env.recorder.source.current().bookings} == {"other"}, timeout=5), \
        "kept only while under way"


def test_every_ignored_snapshot_is_logged_with_its_reason(start_recorder, caplog):
    caplog.set_level(logging.INFO, logger="services.recorder.schedule_source")
    env = start_recorder()
    start = whole_second(60)
    env.book(("b", start, start + timedelta(seconds=2)))
    assert wait_until(lambda: env.recorder.source.current() is not None, timeout=5)
    held = env.recorder.source.current().revision
    _publish_raw(env, held - 1, [])
    _publish_raw(env, micros(utc_now()) + 2 * MAX_AHEAD // timedelta(microseconds=1), [])
    assert wait_until(lambda: sum("ignored schedule revision" in r.getMessage() for r in caplog.records) >= 2,
                      timeout=5)
    messages = [r.getMessage() for r in caplog.records if "ignored schedule revision" in r.getMessage()]
    assert any(f"revision {held - 1}" in m and "older than" in m for m in messages), messages
    assert any("implausible" in m for m in messages), messages
    assert [b.id for b in env.recorder.source.current().bookings] == ["b"]


def test_the_api_restarts_its_revision_from_the_clock_when_the_cache_is_implausibly_ahead(tmp_path, caplog):
    """A cache file written while the clock ran a day ahead: carrying on from it would publish revisions
    every receiver refuses. The next write restarts from the clock, with a warning."""
    path = tmp_path / "bookings.json"
    ahead = micros(utc_now() + timedelta(days=1))
    path.write_text(json.dumps({"schema": SCHEMA, "v": 1, "sent_at": isoformat_z(utc_now()), "camera_id": "c",
                                "revision": ahead, "bookings": []}))
    caplog.set_level(logging.WARNING, logger="shared.schedule_cache")
    before = micros(utc_now())
    start = whole_second(60)
    stored = [Booking(id="x", user_id="u", camera_id="c", start_time=start, end_time=start + timedelta(seconds=5))]
    snapshot = write_snapshot(path, "c", stored)
    assert before <= snapshot.revision <= micros(utc_now()), "restarted from the clock"
    assert any("ahead of the clock" in r.getMessage() for r in caplog.records)
    assert write_snapshot(path, "c", stored).revision > snapshot.revision, "and grows from there"
