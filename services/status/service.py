"""The status service: collect metrics, learn other services' availability from MQTT, publish."""

from __future__ import annotations

import logging
import threading

import psutil

from services.status.metrics import collect
from shared.bus import MqttBus
from shared.models import SystemStatusRow
from shared.payloads import RecordingFinished, RecordingStarted
from shared.settings import Settings
from shared.store import Store
from shared.topics import SERVICES

log = logging.getLogger(__name__)


class StatusService:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.availability: dict[str, str] = {s: "unknown" for s in SERVICES}
        self.recording_now: str | None = None
        self._lock = threading.Lock()

    def on_availability(self, topic: str, payload: bytes) -> None:
        service = topic.rsplit("/", 2)[-2]
        with self._lock:
            self.availability[service] = payload.decode("utf-8", errors="replace")[:16]

    def on_recording_started(self, _topic: str, event: RecordingStarted) -> None:
        self.recording_now = event.booking_id

    def on_recording_finished(self, _topic: str, event: RecordingFinished) -> None:
        if self.recording_now == event.booking_id:
            self.recording_now = None

    def tick(self) -> None:
        with self._lock:
            services = dict(self.availability)
        snapshot = collect(self.settings.camera_id, self.settings.data_dir, services, self.recording_now)
        self.bus.publish(self.bus.topics.status, snapshot, retain=True)
        try:
            self.store.put_system_status(SystemStatusRow(
                camera_id=snapshot.camera_id, collected_at=snapshot.collected_at,
                snapshot=snapshot.model_dump(mode="json")))
        except Exception:
            log.exception("could not store system status; will try again next interval")

    def run(self, stop: threading.Event) -> None:
        psutil.cpu_percent(interval=None)  # primes the counter so the first reading is meaningful
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("status collection failed")
            stop.wait(self.settings.system_status_interval)
