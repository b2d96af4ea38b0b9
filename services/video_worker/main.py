"""`ezrec worker`: raw recordings in, finished videos uploaded."""

from __future__ import annotations

import threading

from services.video_worker.service import build
from shared.bus import MqttBus
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("worker", settings)
    runtime.install_signal_handlers()
    store = open_store(settings)
    bus = MqttBus(settings, "worker")
    worker = build(settings, store, bus)
    bus.start()
    runtime.start_heartbeat(lambda: {"job": worker.current, "mqtt": bus.connected.is_set()})
    thread = threading.Thread(target=worker.run, args=(runtime.stop,), name="worker")
    thread.start()
    while not runtime.stop.wait(1.0):
        pass
    worker.wake.set()
    thread.join()
    bus.stop()
    return 0
