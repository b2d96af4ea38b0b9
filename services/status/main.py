"""`ezrec status`: device health, published retained and stored."""

from __future__ import annotations

import threading

from services.status.service import StatusService
from shared.bus import MqttBus
from shared.payloads import RecordingFinished, RecordingStarted
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("status", settings)
    runtime.install_signal_handlers()
    store = open_store(settings)
    bus = MqttBus(settings, "status")
    service = StatusService(settings, store, bus)
    bus.subscribe_text(f"{bus.topics.base}/+/availability", service.on_availability)
    bus.subscribe(bus.topics.recording_started, RecordingStarted, service.on_recording_started)
    bus.subscribe(bus.topics.recording_finished, RecordingFinished, service.on_recording_finished)
    bus.start()
    runtime.start_heartbeat(lambda: {"mqtt": bus.connected.is_set()})
    thread = threading.Thread(target=service.run, args=(runtime.stop,), name="status")
    thread.start()
    while not runtime.stop.wait(1.0):
        pass
    thread.join()
    bus.stop()
    return 0
