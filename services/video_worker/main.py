"""`ezrec worker`: segments and raw recordings in, finished videos uploaded."""

from __future__ import annotations

import logging
import os
import threading

from services.video_worker.context import worker_name
from services.video_worker.service import VideoWorker, build
from shared.bus import MqttBus
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store

log = logging.getLogger(__name__)

AVAILABILITY_EVERY_S = 30.0


def client_id(settings: Settings) -> str:
    """Distinct per worker: two clients with one id would keep disconnecting each other."""
    base = f"ezrec-{settings.camera_id}-worker"
    return f"{base}-{worker_name(settings)}" if settings.worker_id else base


def keep_leases(worker: VideoWorker, bus: MqttBus, stop: threading.Event, lease_s: float) -> threading.Thread:
    """The heartbeat behind the leases: while this process lives, the rows it holds stay its own."""

    def loop() -> None:
        since_announce = 0.0
        every = max(0.2, lease_s / 3)
        while not stop.wait(every):
            try:
                worker.jobs.renew(worker.ctx.owners)
            except Exception:
                log.exception("renewing leases failed")
            since_announce += every
            if since_announce >= AVAILABILITY_EVERY_S:
                since_announce = 0.0
                bus.reassert_online()

    thread = threading.Thread(target=loop, name="worker-leases", daemon=True)
    thread.start()
    return thread


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("worker", settings)
    runtime.install_signal_handlers()
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # the recorder must never drop frames because an encode runs
    store = open_store(settings)
    bus = MqttBus(settings, "worker", client_id=client_id(settings))
    worker = build(settings, store, bus)
    runtime.attach(bus)  # the operator's restart command and recent-warnings list (shared/runtime.py)
    bus.start()
    runtime.start_heartbeat(lambda: {"job": worker.current, "mqtt": bus.connected.is_set(),
                                     "worker_id": worker.ctx.name})
    keep_leases(worker, bus, runtime.stop, settings.worker_lease_s)
    runtime.run_until_stopped(worker.run, "worker", on_stop=worker.ctx.wake_all)
    bus.stop()
    return 0
