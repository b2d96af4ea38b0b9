"""`ezrec recorder`: bookings in, recordings out."""

from __future__ import annotations

import threading

from services.recorder.service import build
from shared.bus import MqttBus
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("recorder", settings)
    runtime.install_signal_handlers()
    store = open_store(settings)
    bus = MqttBus(settings, "recorder")
    recorder = build(settings, store, bus)
    bus.start()
    runtime.start_heartbeat(lambda: {"recording": recorder.recording_now, "mqtt": bus.connected.is_set(),
                                     "faults": sorted(recorder.faults.active)})
    worker = threading.Thread(target=recorder.run, args=(runtime.stop,), name="recorder")
    worker.start()
    while not runtime.stop.wait(1.0):
        pass
    worker.join()
    bus.stop()
    return 0
