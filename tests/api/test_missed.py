"""A booking whose slot passed unrecorded becomes `missed`, with its reason, in the store, the API and the
retained schedule; anything recorded is left to the recorder; a late recording still completes it."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx

from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus
from shared.payloads import RecorderFault, RecordingStarted
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.api.conftest import AUTH

NOW = utc_now()


def _past(booking_id: str, slot: int, camera_id: str | None = None) -> BookingIn:
    """One-minute slots, back to back, the n-th one ending n minutes (and some seconds) before NOW."""
    end = NOW - timedelta(seconds=60 * slot)
    return BookingIn(id=booking_id, user_id="u1", camera_id=camera_id, start_time=end - timedelta(minutes=1),
                     end_time=end)


def _eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_slot_that_passed_unrecorded_becomes_missed_with_its_reason(live_api, make_settings, tmp_path, listen):
    server = live_api(booking_missed_after_s=1.0)
    settings = server.app.state.ezrec.settings
    camera = settings.camera_id
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "recorder", client_id=f"test-{camera}-recorder", outbox_path=tmp_path / "rec.db")
    bus.start()
    try:
        assert bus.wait_connected(15)
        # What the recorder said while the slots ran: a camera fault naming one booking, a start for another.
        bus.publish(bus.topics.recorder_fault, RecorderFault(camera_id=camera, kind="camera_open",
                                                             reason="no camera found", booking_id="faulted"))
        bus.publish(bus.topics.recording_started, RecordingStarted(booking_id="started", camera_id=camera,
                                                                   first_frame_at=utc_now()))
        assert bus.wait_drained(10)
    finally:
        bus.stop()
    snapshots = listen(f"ezrec/{camera}/bookings")
    store.create_bookings([_past("nothing", 0), _past("faulted", 1, camera_id=camera),
                           _past("started", 2), _past("segments", 3), _past("joined", 4),
                           _past("recorded", 5), _past("elsewhere", 0, camera_id="othercam"),
                           BookingIn(id="later", user_id="u1", start_time=utc_now() + timedelta(hours=1),
                                     end_time=utc_now() + timedelta(hours=2))], camera)
    (settings.raw_dir / "segments").mkdir(parents=True)  # being recorded or finalised: the recorder's
    (settings.raw_dir / "joined.mp4").write_bytes(b"x")
    store.advance_booking_status("recorded", BookingStatus.completed)

    def statuses() -> dict[str, tuple[str, str | None]]:
        got = httpx.get(f"{server.url}/bookings", headers=AUTH).json()
        return {b["id"]: (b["status"], b["status_reason"]) for b in got}

    _eventually(lambda: statuses()["nothing"][0] == "missed")
    time.sleep(1.5)  # another sweep or two: nothing else may change
    now = statuses()
    assert now["nothing"] == ("missed", "not_recorded: nothing was recorded, and no recorder fault or outage "
                                        "was reported")
    assert now["faulted"] == ("missed", "camera_fault: camera_open: no camera found")
    assert now["started"][0] == "missed" and now["started"][1].startswith("nothing_kept: recording started at")
    for kept, status in (("segments", "confirmed"), ("joined", "confirmed"), ("recorded", "completed"),
                         ("elsewhere", "confirmed"), ("later", "confirmed")):
        assert now[kept] == (status, None), kept
    listed = httpx.get(f"{server.url}/bookings", params={"status": "missed"}, headers=AUTH).json()
    assert sorted(b["id"] for b in listed) == ["faulted", "nothing", "started"]
    # The recorder and the status service read the retained schedule: it says missed too.
    snapshots.wait_for(lambda t, p: {b["id"]: b["status"] for b in json.loads(p)["bookings"]}.get("nothing")
                       == "missed")
    # A missed booking is over: it can be neither moved nor cancelled.
    put = httpx.put(f"{server.url}/bookings/nothing", headers=AUTH, json={
        "start_time": isoformat_z(utc_now() + timedelta(hours=3)), "end_time": isoformat_z(utc_now() +
                                                                                            timedelta(hours=4))})
    assert put.status_code == 409 and "has ended" in put.json()["detail"]["message"]
    assert httpx.delete(f"{server.url}/bookings/nothing", headers=AUTH).status_code == 409
    # A recording that turns up after the check (a recorder restarting and joining leftover segments) still
    # completes the booking, and the reason goes.
    store.advance_booking_status("nothing", BookingStatus.completed)
    assert statuses()["nothing"] == ("completed", None)
    store.close()


def test_the_reason_says_what_the_recorder_was_doing(settings):
    """The first cause that holds: a fault naming the booking, the recorder not running (its heartbeat or
    its will), a fault active during the slot, a start with nothing kept; else not_recorded."""
    from services.api.missed import RecorderWatch
    from shared.models import Booking

    start = utc_now() - timedelta(minutes=30)
    booking = Booking(id="b1", user_id="u1", camera_id=settings.camera_id, start_time=start,
                      end_time=start + timedelta(minutes=10))
    clock = [start - timedelta(minutes=5)]
    watch = RecorderWatch(settings, clock=lambda: clock[0])
    topic = f"ezrec/{settings.camera_id}/recorder/availability"

    def fault(kind: str, reason: str, at, active=True, booking_id=None, camera_id=settings.camera_id):
        watch.observe("f", RecorderFault(camera_id=camera_id, kind=kind, reason=reason, active=active,
                                         booking_id=booking_id, sent_at=at), False)

    assert watch.reason_for(booking).startswith("not_recorded:")
    watch.observe("s", RecordingStarted(booking_id="b1", camera_id=settings.camera_id, first_frame_at=start), False)
    assert watch.reason_for(booking).startswith("nothing_kept: recording started at ")
    fault("disk_low", "300 MB free", start - timedelta(minutes=20))  # before the slot, never cleared
    assert watch.reason_for(booking) == "disk_low: 300 MB free"
    fault("disk_low", "cleared", start - timedelta(minutes=15), active=False)  # cleared before the slot
    fault("camera_stall", "no frame for 5 s", start + timedelta(minutes=2))  # during the slot
    fault("camera_open", "another camera's", start + timedelta(minutes=1), camera_id="othercam")
    assert watch.reason_for(booking) == "camera_fault: camera_stall: no frame for 5 s"
    watch.observe(topic, "offline", True)  # the recorder's will, before the slot
    assert watch.reason_for(booking) == "recorder_offline: the recorder was offline during the slot"
    watch.observe(topic, "online", False)  # a plain message is nobody's will
    assert watch.reason_for(booking).startswith("recorder_offline")
    clock[0] = start - timedelta(minutes=1)
    watch.observe(topic, "online", True)  # back before the slot: the offline no longer explains it
    assert watch.reason_for(booking) == "camera_fault: camera_stall: no frame for 5 s"
    (settings.state_dir / "heartbeat-recorder.json").write_text(json.dumps(
        {"pid": 1, "at": (start + timedelta(minutes=3)).timestamp(), "mqtt": True}))
    assert watch.reason_for(booking).startswith("recorder_offline: the recorder's last heartbeat was at ")
    fault("camera_open", "no camera found", start, booking_id="b1")  # names the booking: says most
    assert watch.reason_for(booking) == "camera_fault: camera_open: no camera found"
