"""`ezrec status`: device health, published retained and stored; alerts; Home Assistant discovery."""

from __future__ import annotations

from services.status.service import StatusService
from shared.bus import MqttBus
from shared.payloads import (
    DeadLetter,
    RecorderFault,
    RecordingFinished,
    RecordingStarted,
    ScheduleSnapshot,
    VideoFailed,
)
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.store import open_store
from shared.topics import DEADLETTER


def subscribe(bus: MqttBus, service: StatusService) -> None:
    topics, pipeline = bus.topics, service.pipeline
    # With the retain flag as published: only a retained `online`/`offline` is a service's word (its will).
    bus.subscribe_retained(f"{topics.base}/+/availability", service.on_availability)
    bus.subscribe(topics.recording_started, RecordingStarted, service.on_recording_started)
    bus.subscribe(topics.recording_finished, RecordingFinished, service.on_recording_finished)
    bus.subscribe(topics.bookings, ScheduleSnapshot, pipeline.on_bookings)
    bus.subscribe(topics.video_failed, VideoFailed, pipeline.on_video_failed)
    bus.subscribe(DEADLETTER, DeadLetter, pipeline.on_deadletter)
    bus.subscribe(topics.recorder_fault, RecorderFault, pipeline.on_recorder_fault)
    if service.settings.ha_discovery:
        bus.subscribe_text(f"{service.settings.ha_discovery_prefix}/status", service.on_ha_status)


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("status", settings)
    runtime.install_signal_handlers()
    store = open_store(settings, drain=False)  # the worker and the API upload (see open_store)
    bus = MqttBus(settings, "status")
    service = StatusService(settings, store, bus)
    subscribe(bus, service)
    runtime.attach(bus, actions={"snapshot": service.request_snapshot})
    bus.start()
    runtime.start_heartbeat(lambda: {"mqtt": bus.connected.is_set()})
    runtime.run_until_stopped(service.run, "status", on_stop=service.wake)
    bus.stop()
    return 0
