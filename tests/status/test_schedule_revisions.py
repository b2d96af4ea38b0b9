"""The status service reads the schedule snapshots by the recorder's rules (docs/schedule-revisions.md).

Real broker, real StatusService: one forged retained snapshot with a huge revision must not freeze the
current and next booking it reports, and a publisher that starts again below the revision it holds (its
clock had run ahead) is followed.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish

from services.status.service import StatusService
from shared.payloads import ScheduledBooking, ScheduleSnapshot
from shared.schedule_revision import micros
from shared.timeutil import utc_now
from tests.status.test_service import eventually, running


def _publish(settings, revision: int, bookings: list[ScheduledBooking]) -> None:
    snapshot = ScheduleSnapshot(camera_id=settings.camera_id, revision=revision, bookings=bookings)
    payload = json.loads(snapshot.model_dump_json())
    mqtt_publish.single(f"ezrec/{settings.camera_id}/bookings", json.dumps(payload), qos=1, retain=True,
                        hostname="127.0.0.1", port=settings.mqtt_port, protocol=mqtt.MQTTv5)


def _booking(booking_id: str, start_min: float, end_min: float) -> ScheduledBooking:
    now = utc_now().replace(microsecond=0)
    return ScheduledBooking(id=booking_id, user_id="u1", start_time=now + timedelta(minutes=start_min),
                            end_time=now + timedelta(minutes=end_min), status="confirmed")


def _around(service: StatusService) -> tuple[str | None, str | None]:
    view = service.pipeline.view(utc_now())
    return (view.current_booking.id if view.current_booking else None,
            view.next_booking.id if view.next_booking else None)


def test_a_forged_huge_revision_does_not_freeze_the_reported_bookings(settings, plain_probes, caplog):
    caplog.set_level(logging.INFO, logger="services.status.pipeline_tracker")
    with running(settings, plain_probes) as service:
        _publish(settings, micros(utc_now()), [_booking("now1", -5, 25), _booking("next1", 60, 90)])
        eventually(lambda: _around(service) == ("now1", "next1"))
        _publish(settings, 9_000_000_000_000_000_000, [])
        eventually(lambda: any("implausible" in r.getMessage() for r in caplog.records))
        assert _around(service) == ("now1", "next1")
        _publish(settings, micros(utc_now()), [_booking("now1", -5, 25), _booking("next2", 40, 50)])
        eventually(lambda: _around(service) == ("now1", "next2"))
        snap = service.tick()
    assert snap.current_booking.id == "now1" and snap.next_booking.id == "next2"


def test_a_publisher_starting_again_below_the_held_revision_is_followed(settings, plain_probes, caplog):
    caplog.set_level(logging.INFO, logger="services.status.pipeline_tracker")
    with running(settings, plain_probes) as service:
        _publish(settings, micros(utc_now() + timedelta(hours=1)), [_booking("old", 60, 90)])
        eventually(lambda: _around(service) == (None, "old"))
        _publish(settings, micros(utc_now()), [_booking("fresh", 30, 40)])
        eventually(lambda: _around(service) == (None, "fresh"))
    assert any("ahead of the clock" in r.getMessage() for r in caplog.records), "the log says why the lower won"
