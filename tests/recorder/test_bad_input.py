"""Malformed bookings are dead-lettered one by one; the good ones in the same schedule still record."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish

from services.recorder.schedule_intake import LooseSchedule, judge
from services.recorder.schedule_source import ScheduleSource
from services.recorder.service import build
from shared.bus import MqttBus
from shared.schedule_cache import SCHEMA
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.recorder.conftest import booking_json, frame_times, whole_second

BAD_REASONS = {
    "naive": "timezone",
    "backwards": "not after start_time",
    "marathon": "MAX_BOOKING_MINUTES",
    "../../escape": "id",
    "a/b": "id",
}


def _bad_bookings(start):
    naive = start.replace(tzinfo=None).isoformat()
    return [
        booking_json("naive", naive, (start + timedelta(seconds=2)).replace(tzinfo=None).isoformat()),
        booking_json("backwards", start + timedelta(seconds=2), start),
        booking_json("marathon", start, start + timedelta(minutes=241)),
        booking_json("../../escape", start, start + timedelta(seconds=2)),
        booking_json("a/b", start, start + timedelta(seconds=2)),
        {"id": "no-times", "user_id": "u1", "status": "confirmed"},
        "not even an object",
    ]


def test_judge_keeps_good_bookings_and_says_why_each_bad_one_is_refused():
    start = whole_second(60)
    good = booking_json("good", start, start + timedelta(seconds=2))
    snapshot, rejected = judge(LooseSchedule(camera_id="c", revision=1, bookings=[good, *_bad_bookings(start), good]),
                               max_minutes=240)
    assert [b.id for b in snapshot.bookings] == ["good"]
    assert len(rejected) == 8
    reasons = {r.booking["id"] if isinstance(r.booking, dict) else r.booking: r.reason for r in rejected[:-1]}
    for booking_id, word in BAD_REASONS.items():
        assert word in reasons[booking_id], (booking_id, reasons[booking_id])
    assert "appears twice" in rejected[-1].reason


def test_malformed_bookings_on_mqtt_are_dead_lettered_and_the_good_one_records(start_recorder, listen):
    env = start_recorder(segment_seconds=10.0)
    deadletters = listen("ezrec/deadletter")
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    topic = f"ezrec/{env.settings.camera_id}/bookings"
    mqtt_publish.single(topic, b"{not json", qos=1, hostname="127.0.0.1", port=env.settings.mqtt_port,
                        protocol=mqtt.MQTTv5)
    deadletters.wait_for(lambda t, p: json.loads(p)["topic"] == topic and "LooseSchedule" in json.loads(p)["error"])

    start = whole_second(1.0)
    env.publish_schedule([*_bad_bookings(start), booking_json("good", start, start + timedelta(seconds=1.2))])
    finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "good", timeout=20)
    letters = [json.loads(p) for _, p, _ in deadletters.messages]
    per_booking = [d for d in letters if d["error"].startswith("invalid booking")]
    assert len(per_booking) == 7 and all(d["service"] == "recorder" and d["topic"] == topic for d in per_booking)
    assert any("../../escape" in d["payload"] for d in per_booking)
    assert len(frame_times(env.raw / "good.mp4")) == round(1.2 * env.settings.camera_fps)
    everything = {p.relative_to(env.settings.data_dir).as_posix() for p in env.settings.data_dir.rglob("*")}
    assert not any("escape" in p or p.endswith("/b") or "naive" in p or "marathon" in p for p in everything), \
        "a rejected id never becomes a path"
    assert not (env.settings.data_dir.parent / "escape").exists()
    assert env.thread.is_alive()


def test_malformed_bookings_in_the_cache_file_are_logged_and_dead_lettered(settings, listen):
    deadletters = listen("ezrec/deadletter")
    bus = MqttBus(settings, "recorder")
    store = LocalStore(settings.data_dir)
    recorder = build(settings, store, bus)
    bus.start()
    try:
        start = whole_second(30)
        cache = settings.bookings_cache_path
        cache.write_text(json.dumps({"schema": SCHEMA, "v": 1, "sent_at": isoformat_z(utc_now()),
                                     "camera_id": settings.camera_id, "revision": 7,
                                     "bookings": [*_bad_bookings(start),
                                                  booking_json("fine", start, start + timedelta(seconds=2))]}))
        recorder.source.check_file()
        current = recorder.source.current()
        assert current is not None and [b.id for b in current.bookings] == ["fine"]
        deadletters.wait_for(lambda t, p: sum(1 for _, q, _ in deadletters.messages
                                              if json.loads(q)["topic"] == f"file:{cache}") >= 7)

        cache.write_text("[1, 2, 3]")  # a list, not the versioned object: refused loudly, never guessed at
        recorder.source.check_file()
        deadletters.wait_for(lambda t, p: "schema" in json.loads(p)["error"])
        assert [b.id for b in recorder.source.current().bookings] == ["fine"], "the last good schedule stays"
    finally:
        bus.stop()


def test_the_file_watcher_picks_up_cache_edits_at_once(tmp_path):
    source = ScheduleSource(tmp_path / "bookings.json", "c1", 240)
    stop = threading.Event()
    source.watch(stop, interval=0.05)
    try:
        start = whole_second(30)
        (tmp_path / "bookings.json").write_text(json.dumps({
            "schema": SCHEMA, "v": 1, "sent_at": isoformat_z(utc_now()), "camera_id": "c1", "revision": 3,
            "bookings": [booking_json("x", start, start + timedelta(seconds=2))]}))
        assert source.changed.wait(2), "the scheduler is woken without waiting for BOOKING_CHECK_INTERVAL"
        assert [b.id for b in source.current().bookings] == ["x"]
    finally:
        stop.set()
