"""`ezrec recorder`: bookings in, recordings out."""

from __future__ import annotations

from services.recorder.service import build
from shared.bus import MqttBus
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("recorder", settings)
    runtime.install_signal_handlers()
    store = open_store(settings, drain=False)  # the worker and the API upload (see open_store)
    bus = MqttBus(settings, "recorder")
    recorder = build(settings, store, bus)
    runtime.attach(bus)  # the operator's restart command and recent-warnings list (shared/runtime.py)
    bus.start()
    runtime.start_heartbeat(lambda: {"recording": recorder.recording_now, "mqtt": bus.connected.is_set(),
                                     "faults": sorted(recorder.faults.active)})
    runtime.run_until_stopped(recorder.run, "recorder")
    bus.stop()
    return 0
