"""A court in one process: the recorder (synthetic camera, mock GPIO button), the worker and the API, on the real
broker and one embedded store, as `ezrec up` runs them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from fastapi.testclient import TestClient

from services.recorder.service import Recorder
from services.video_worker.service import VideoWorker
from shared.settings import Settings
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.conftest import TOKEN, Listener
from tests.in_process import services_in_process

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BUTTON_PIN = 17
COURT = dict(camera_warmup_s=0.5, segment_seconds=2.0, camera_stall_s=2.0, booking_check_interval=1.0,
             highlight_seconds=2.0, highlight_after_s=1.0, highlight_gpio_pin=BUTTON_PIN)
"""Seconds-long bookings: 2 s segments (a clip spans several), 2 s + 1 s clips."""


@dataclass
class Court:
    settings: Settings
    store: LocalStore
    recorder: Recorder
    worker: VideoWorker
    api: TestClient
    events: Listener
    pin: object  # gpiozero's MockPin behind the button

    @property
    def camera(self) -> str:
        return self.settings.camera_id

    def book(self, booking_id: str, in_s: float, seconds: float, user: str = "player1") -> datetime:
        start = (utc_now() + timedelta(seconds=in_s)).replace(microsecond=0) + timedelta(seconds=1)
        body = {"id": booking_id, "user_id": user, "start_time": isoformat_z(start),
                "end_time": isoformat_z(start + timedelta(seconds=seconds))}
        assert self.api.post("/bookings", json=body, headers=AUTH).status_code == 201
        return start

    def press_button(self) -> None:
        self.pin.drive_low()  # type: ignore[attr-defined]  # to ground: pressed (pull-up)
        time.sleep(0.08)
        self.pin.drive_high()  # type: ignore[attr-defined]

    def publish(self, payload: bytes | dict, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        mqtt_publish.single(f"ezrec/{self.camera}/highlight/request", data, qos=1, retain=retain,
                            hostname="127.0.0.1", port=self.settings.mqtt_port, protocol=mqtt.MQTTv5)

    def event_payloads(self, suffix: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in list(self.events.messages) if t.endswith(suffix)]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()


def sleep_until(at: datetime) -> None:
    time.sleep(max(0.0, (at - utc_now()).total_seconds()))


@pytest.fixture
def court(make_settings, listen) -> Iterator[Court]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    settings = make_settings(**COURT)
    events = listen(f"ezrec/{settings.camera_id}/#")
    with services_in_process(settings) as running:
        yield Court(settings, running.store, running.recorder, running.worker, running.api, events,
                    Device.pin_factory.pin(BUTTON_PIN))
    mqtt_publish.single(f"ezrec/{settings.camera_id}/bookings", b"", qos=1, retain=True, hostname="127.0.0.1",
                        port=settings.mqtt_port, protocol=mqtt.MQTTv5)
    Device.pin_factory.close()
    Device.pin_factory = previous
