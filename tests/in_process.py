"""The recorder, the worker and the API in the test's own process, as `ezrec up` runs them as processes: the real
broker, one embedded store, a stand-in only where a test installs one (a camera, a GPIO pin)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi.testclient import TestClient

from services.api.main import create_app
from services.recorder.service import Recorder
from services.recorder.service import build as build_recorder
from services.video_worker.service import VideoWorker
from services.video_worker.service import build as build_worker
from shared.bus import MqttBus
from shared.settings import Settings
from shared.store import LocalStore


@dataclass
class InProcess:
    store: LocalStore
    recorder: Recorder
    worker: VideoWorker
    api: TestClient


@contextmanager
def services_in_process(settings: Settings) -> Iterator[InProcess]:
    """Started and connected on entry; on exit the loops are stopped and joined before the buses go."""
    store = LocalStore(settings.data_dir)
    buses = [MqttBus(settings, "recorder"), MqttBus(settings, "worker")]
    recorder = build_recorder(settings, store, buses[0])
    worker = build_worker(settings, LocalStore(settings.data_dir), buses[1])
    stop = threading.Event()
    threads = [threading.Thread(target=recorder.run, args=(stop,), name="test-recorder"),
               threading.Thread(target=worker.run, args=(stop,), name="test-worker")]
    for bus in buses:
        bus.start()
        assert bus.wait_connected(10)
    for thread in threads:
        thread.start()
    try:
        with TestClient(create_app(settings)) as api:
            yield InProcess(store, recorder, worker, api)
    finally:
        stop.set()
        worker.ctx.wake_all()
        for thread in threads:
            thread.join(30)
        for bus in buses:
            bus.stop()
