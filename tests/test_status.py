from __future__ import annotations

import json
import threading
import time

from services.status.metrics import collect, cpu_temperature_c
from services.status.service import StatusService
from shared.bus import MqttBus
from shared.payloads import StatusSnapshot
from shared.store import LocalStore


def test_thermal_zone_is_read_when_present_and_omitted_when_not(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("61234\n")
    assert cpu_temperature_c(zone) == 61.234
    assert cpu_temperature_c(tmp_path / "missing") is None
    snap = collect("cam1", tmp_path, {}, None, thermal_zone=tmp_path / "missing")
    assert snap.cpu_temperature_c is None and snap.disk_total_gb > 0 and 0 <= snap.memory_percent <= 100


def test_snapshot_is_published_retained_and_stored_with_availability(settings, listen):
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "status")
    service = StatusService(settings, store, bus)
    bus.subscribe_text(f"{bus.topics.base}/+/availability", service.on_availability)
    recorder = MqttBus(settings, "recorder")
    bus.start()
    recorder.start()
    try:
        assert bus.wait_connected(10) and recorder.wait_connected(10)
        deadline = time.monotonic() + 10
        while service.availability["recorder"] != "online" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.availability["recorder"] == "online"
        service.tick()
        assert bus.wait_drained(10)
        late = listen(bus.topics.status)  # a dashboard connecting later still gets the last snapshot
        _, payload = late.wait_for(lambda t, p: True)
        snap = StatusSnapshot.model_validate_json(payload)
        assert late.messages[0][2] is True
        assert snap.services["recorder"] == "online" and snap.services["status"] == "online"
        row = store.get_system_status(settings.camera_id)
        assert row is not None and row.snapshot["disk_free_gb"] == snap.disk_free_gb
        recorder.stop()  # clean stop says offline
        deadline = time.monotonic() + 10
        while service.availability["recorder"] != "offline" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.availability["recorder"] == "offline"
    finally:
        bus.stop()


def test_a_failing_store_does_not_stop_collection(settings, listen):
    class BrokenStore(LocalStore):
        def put_system_status(self, row):  # type: ignore[override]
            raise OSError("disk full")

    bus = MqttBus(settings, "status")
    service = StatusService(settings, BrokenStore(settings.data_dir), bus)
    feed = listen(bus.topics.status)
    bus.start()
    stop = threading.Event()
    settings_fast = settings.model_copy(update={"system_status_interval": 0.2})
    service.settings = settings_fast
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        feed.wait_for(lambda t, p: len(feed.messages) >= 3, timeout=15)
        assert all(json.loads(p)["camera_id"] == settings.camera_id for _, p, _ in feed.messages)
    finally:
        stop.set()
        thread.join()
        bus.stop()
