"""The status service against a real broker: every metric path, alerts on the wire, discovery, restarts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import paho.mqtt.client as mqtt

from services.status.main import subscribe
from services.status.service import StatusService
from shared.bus import MqttBus
from shared.payloads import (
    Alert,
    RecorderFault,
    RecordingStarted,
    ScheduledBooking,
    ScheduleSnapshot,
    StatusSnapshot,
    VideoFailed,
)
from shared.store import LocalStore
from shared.timeutil import utc_now
from shared.topics import Topics
from tests.status.conftest import fake_pi


def eventually(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@contextmanager
def running(settings, probes, store=None) -> Iterator[StatusService]:
    bus = MqttBus(settings, "status")
    service = StatusService(settings, store or LocalStore(settings.data_dir), bus, probes=probes)
    subscribe(bus, service)
    bus.start()
    try:
        assert bus.wait_connected(15)
        yield service
    finally:
        bus.stop()


@contextmanager
def peer(settings, name: str) -> Iterator[MqttBus]:
    bus = MqttBus(settings, name)
    bus.start()
    try:
        assert bus.wait_connected(15)
        yield bus
    finally:
        bus.stop()


def raw_publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    raw_publish_many(port, [(topic, payload, retain)])


def raw_publish_many(port: int, messages: list[tuple[str, bytes, bool]]) -> None:
    """A plain client (anyone on the broker), one connection for all, each publish acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in messages]:
            info.wait_for_publish(10)
    finally:
        client.disconnect()  # first: loop_stop() on a connected client waits out a 1 s select
        client.loop_stop()


def alerts_of(listener) -> list[Alert]:
    return [Alert.model_validate_json(p) for _, p, _ in listener.messages]


def test_snapshot_is_published_retained_and_stored_with_availability(settings, listen, plain_probes):
    store = LocalStore(settings.data_dir)
    recorder = MqttBus(settings, "recorder")
    with running(settings, plain_probes, store) as service:
        recorder.start()
        eventually(lambda: service.availability["recorder"] == "online")
        service.tick()
        assert service.bus.wait_drained(10)
        late = listen(service.bus.topics.status)  # a dashboard connecting later still gets the last snapshot
        _, payload = late.wait_for(lambda t, p: True)
        snap = StatusSnapshot.model_validate_json(payload)
        assert late.messages[0][2] is True
        assert snap.services["recorder"] == "online" and snap.services["status"] == "online"
        row = store.get_system_status(settings.camera_id)
        assert row is not None and row.snapshot == json.loads(payload)  # stored = published
        recorder.stop()  # clean stop says offline
        eventually(lambda: service.availability["recorder"] == "offline")


def test_every_metric_path_on_a_simulated_pi(settings, listen, tmp_path):
    """Pi-only readings from simulated files and a fake vcgencmd; the pipeline from real bus events and files."""
    probes = fake_pi(tmp_path / "pi", millidegrees=71500, throttled="0x50005")
    now = utc_now().replace(microsecond=0)
    schedule = ScheduleSnapshot(camera_id=settings.camera_id, revision=7, bookings=[
        ScheduledBooking(id="now1", user_id="u1", start_time=now - timedelta(minutes=5),
                         end_time=now + timedelta(minutes=25), status="confirmed"),
        ScheduledBooking(id="next1", user_id="u2", start_time=now + timedelta(hours=1),
                         end_time=now + timedelta(hours=2), status="confirmed")])
    (settings.raw_dir / "old1.mp4").write_bytes(b"x")
    (settings.raw_dir / "now1").mkdir()
    for i in range(3):
        (settings.raw_dir / "now1" / f"part-{i:03d}.mp4").write_bytes(b"x")
    (settings.processed_dir / "done1.mp4").write_bytes(b"x")
    alerts = listen(f"ezrec/{settings.camera_id}/alerts")
    with peer(settings, "api") as api:
        api.publish(api.topics.bookings, schedule, retain=True)
        assert api.wait_drained(10)
    with running(settings, probes) as service, peer(settings, "recorder") as recorder, \
            peer(settings, "worker") as worker:
        topics = service.bus.topics
        recorder.publish(topics.recording_started, RecordingStarted(
            booking_id="now1", camera_id=settings.camera_id, first_frame_at=now))
        worker.publish(topics.video_failed, VideoFailed(booking_id="old1", element="upload", reason="HTTP 503"))
        assert recorder.wait_drained(10) and worker.wait_drained(10)
        raw_publish(settings.mqtt_port, topics.video_failed, b'{"v": 1, "booking_id": 42}')  # dead-lettered
        recorder.publish(topics.recorder_fault, RecorderFault(  # the recorder's own model, read as text
            camera_id=settings.camera_id, kind="camera_stall", reason="camera disconnected", booking_id="now1"))
        eventually(lambda: {"worker", "status", "recorder"} <= set(service.pipeline.view(utc_now()).last_errors))
        snap = service.tick()
    assert snap.cpu_temperature_c == 71.5
    t = snap.throttling
    assert t is not None and t.raw == "0x50005" and t.under_voltage_now and t.throttled_now
    assert not t.arm_frequency_capped_now and t.under_voltage_since_boot and not t.soft_temp_limit_since_boot
    assert snap.broker_connected is True and snap.cloud_reachable is None
    assert snap.load_5m is not None and snap.load_15m is not None and snap.memory_total_mb > 0
    assert snap.recording_now == "now1"
    assert snap.current_booking.id == "now1" and snap.next_booking.id == "next1"
    assert (snap.jobs_waiting, snap.segments_waiting, snap.uploads_pending) == (1, 3, 1)
    assert snap.last_errors["worker"].reason == "upload: HTTP 503"
    assert snap.last_errors["status"].topic == f"ezrec/{settings.camera_id}/video/failed"
    assert "invalid VideoFailed" in snap.last_errors["status"].reason
    assert snap.last_errors["recorder"].reason == "camera_stall: camera disconnected"
    assert snap.camera_fault == "camera disconnected" and snap.alerts_active == ["camera_fault"]
    wire = json.loads(snap.model_dump_json())
    assert "cloud_reachable" not in wire and wire["throttling"]["throttled_now"] is True
    alerts.wait_for(lambda t, p: json.loads(p)["id"] == "camera_fault")
    assert [(a.id, a.state, a.value) for a in alerts_of(alerts)] == [("camera_fault", "raised", "camera disconnected")]


def test_off_the_pi_the_pi_fields_are_omitted_and_the_cloud_is_checked(make_settings, plain_probes):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        settings = make_settings(supabase_url=f"http://127.0.0.1:{server.getsockname()[1]}")
        with running(settings, plain_probes) as service:
            snap = service.tick()
    wire = json.loads(snap.model_dump_json())
    assert "cpu_temperature_c" not in wire and "throttling" not in wire
    assert wire["cloud_reachable"] is True
    assert wire["jobs_waiting"] == 0 and wire["current_booking"] is None and wire["next_booking"] is None


def test_alerts_go_out_once_and_a_restart_does_not_re_raise(make_settings, listen, plain_probes):
    settings = make_settings(alert_disk_free_gb=1e9)  # every disk is "low"
    feed = listen(f"ezrec/{settings.camera_id}/alerts")
    with running(settings, plain_probes) as service:
        assert service.tick().alerts_active == ["disk_low"]
        service.tick()
        assert service.bus.wait_drained(10)
    feed.wait_for(lambda t, p: True)
    with running(settings, plain_probes) as restarted:  # same DATA_DIR: the alert book is on disk
        assert restarted.tick().alerts_active == ["disk_low"]
        assert restarted.bus.wait_drained(10)
    cleared_settings = settings.model_copy(update={"alert_disk_free_gb": 0.0})
    with running(cleared_settings, plain_probes) as again:
        assert again.tick().alerts_active == []
        again.tick()
        assert again.bus.wait_drained(10)
    feed.wait_for(lambda t, p: json.loads(p)["state"] == "cleared")
    time.sleep(0.3)  # a duplicate would arrive right behind
    got = alerts_of(feed)
    assert [(a.id, a.state) for a in got] == [("disk_low", "raised"), ("disk_low", "cleared")]
    assert got[0].threshold == 1e9 and got[0].value > 0


def test_discovery_is_retained_and_repeated_when_home_assistant_restarts(make_settings, listen, pi_probes):
    settings = make_settings(ha_discovery_prefix="ha-test")
    node = f"ezrec_{settings.camera_id}"
    with running(settings, pi_probes) as service:
        service.tick()
        service.tick()  # unchanged fields, still connected: not announced again
        assert service.bus.wait_drained(10)
        configs = listen(f"ha-test/+/{node}/+/config")
        eventually(lambda: len(configs.messages) >= 20)
        time.sleep(0.3)
        first = {t: json.loads(p) for t, p, _ in configs.messages}
        assert len(first) == len(configs.messages) and all(r for _, _, r in configs.messages)  # retained, once
        assert f"ha-test/sensor/{node}/cpu_temperature_c/config" in first
        assert f"ha-test/binary_sensor/{node}/throttling_under_voltage_now/config" in first
        assert first[f"ha-test/sensor/{node}/disk_free_gb/config"]["state_topic"] == service.bus.topics.status
        count = len(configs.messages)
        raw_publish(settings.mqtt_port, "ha-test/status", b"online")  # Home Assistant's birth message
        eventually(lambda: len(configs.messages) >= 2 * count)


def test_discovery_can_be_switched_off(make_settings, listen, plain_probes):
    settings = make_settings(ha_discovery=False, ha_discovery_prefix="ha-off")
    configs = listen("ha-off/#")
    with running(settings, plain_probes) as service:
        service.tick()
        assert service.bus.wait_drained(10)
    time.sleep(0.3)
    assert configs.messages == []


def test_a_failing_store_does_not_stop_collection(make_settings, listen, plain_probes):
    class BrokenStore(LocalStore):
        def put_system_status(self, row):  # type: ignore[override]
            raise OSError("disk full")

    settings = make_settings(system_status_interval=0.2)
    feed = listen(f"ezrec/{settings.camera_id}/status")
    with running(settings, plain_probes, BrokenStore(settings.data_dir)) as service:
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,))
        thread.start()
        try:
            feed.wait_for(lambda t, p: len(feed.messages) >= 3, timeout=15)
        finally:
            stop.set()
            thread.join()
    assert all(json.loads(p)["camera_id"] == settings.camera_id for _, p, _ in feed.messages)


def test_no_status_is_queued_while_the_broker_is_away(settings, plain_probes):
    """Hours of stale snapshots must not pile up in the outbox; alerts still do."""
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings.model_copy(update={"mqtt_port": 1}), "status")  # nothing listens on port 1
    service = StatusService(settings.model_copy(update={"alert_disk_free_gb": 1e9}), store, bus, probes=plain_probes)
    bus.start()
    try:
        for _ in range(3):
            snap = service.tick()
        assert snap.broker_connected is False
        assert bus.outbox.pending_count() == 1  # the disk_low alert only
        assert len(store.list_system_status(settings.camera_id, utc_now() - timedelta(minutes=1))) == 3
    finally:
        bus.stop(timeout=0.1)


def beat(settings, service: str, **details) -> None:
    """A heartbeat file exactly as ServiceRuntime.beat writes it (the process's own word that it runs)."""
    (settings.state_dir / f"heartbeat-{service}.json").write_text(json.dumps({"pid": 1, "at": time.time(),
                                                                               **details}))


def test_availability_is_judged_by_heartbeat_and_will_not_by_one_message(make_settings, plain_probes):
    """A single non-retained `offline` once raised service_offline while the recorder was recording."""
    settings = make_settings(alert_hold_s=0)
    base = f"ezrec/{settings.camera_id}"
    worker = MqttBus(settings, "worker")
    worker.start()
    with running(settings, plain_probes) as service, peer(settings, "recorder"):
        beat(settings, "recorder", mqtt=True, recording="b1")
        eventually(lambda: service.availability["recorder"] == "online" and service.availability["worker"] == "online")
        raw_publish(settings.mqtt_port, f"{base}/recorder/availability", b"offline")  # plain: nobody's will
        raw_publish(settings.mqtt_port, f"{base}/worker/availability", b"offline")
        raw_publish(settings.mqtt_port, f"{base}/api/availability", b"junk \xff", retain=True)
        time.sleep(0.5)
        snap = service.tick()
        assert snap.services["recorder"] == "online" and snap.services["worker"] == "online"
        assert not [a for a in snap.alerts_active if a.startswith("service_offline:recorder")]
        # Even a retained `offline` cannot take down a recorder whose heartbeat says it runs and is connected.
        raw_publish(settings.mqtt_port, f"{base}/recorder/availability", b"offline", retain=True)
        time.sleep(0.5)
        assert service.tick().services["recorder"] == "online"
        # A real stop: the worker's clean `offline` (retained, no heartbeat here) is believed at once.
        worker.stop()
        eventually(lambda: service.availability["worker"] == "offline")
        # The recorder's process gone: its heartbeat goes stale, the will decides.
        beat(settings, "recorder", mqtt=True)
        (settings.state_dir / "heartbeat-recorder.json").write_text(json.dumps({"pid": 1, "at": time.time() - 60}))
        assert service.tick().services["recorder"] == "offline"
        beat(settings, "recorder", mqtt=False)  # running, but cut off from the broker
        assert service.tick().services["recorder"] == "offline"


def test_invented_services_junk_faults_and_dead_letters_cannot_grow_the_snapshot(make_settings, plain_probes):
    """150 invented service names once grew `services` to 154 entries and the retained snapshot to 62 KB;
    junk on recorder/fault raised a camera alert carrying the junk; last_errors kept 153 entries."""
    settings = make_settings(alert_hold_s=0)
    base = f"ezrec/{settings.camera_id}"
    with running(settings, plain_probes) as service:
        raw_publish_many(settings.mqtt_port, [
            *[(f"{base}/svc{i}/availability", b"online", True) for i in range(150)],
            *[("ezrec/deadletter", json.dumps({"v": 1, "topic": f"{base}/x" + "y" * 2000, "service": f"svc{i}",
                                              "error": "e" * 5000, "payload": "p"}).encode(), False)
              for i in range(150)],
            (f"{base}/recorder/fault", b"JUNK-JUNK \x00\xff" * 100, False),
            (f"{base}/recorder/fault", b'{"reason": "JUNK-JUNK"}', False)])
        eventually(lambda: len(service.pipeline.view(utc_now()).last_errors) >= 2)
        time.sleep(0.5)
        snap = service.tick()
        assert set(snap.services) == {"api", "recorder", "worker", "status"}
        assert snap.camera_fault is None and "camera_fault" not in snap.alerts_active
        wire = snap.model_dump_json()
        assert "JUNK" not in wire.replace("invalid RecorderFault", "")
        assert len(snap.last_errors) <= 5 and len(wire) < 8 * 1024, (len(snap.last_errors), len(wire))
        assert all(len(e.topic) <= 200 and len(e.reason) <= 300 for e in snap.last_errors.values())

    # A state file written by an older version (or by hand) with 153 entries is trimmed when read.
    memory = json.loads((settings.state_dir / "status-pipeline.json").read_text())
    now = utc_now().isoformat()
    memory["last_errors"] = {f"svc{i}": {"at": now, "topic": "t" * 1000, "reason": "r" * 1000} for i in range(153)}
    (settings.state_dir / "status-pipeline.json").write_text(json.dumps(memory))
    with running(settings, plain_probes) as restarted:
        errors = restarted.tick().last_errors
        assert len(errors) <= 5 and all(len(e.topic) <= 200 and len(e.reason) <= 300 for e in errors.values())


def test_a_recorder_fault_must_be_a_recorder_fault(make_settings, plain_probes):
    settings = make_settings()
    topics = Topics(settings.camera_id)
    with running(settings, plain_probes) as service, peer(settings, "recorder") as recorder:
        recorder.publish(topics.recorder_fault, RecorderFault(camera_id="othercam", kind="camera_stall",
                                                             reason="another camera's"))
        recorder.publish(topics.recorder_fault, RecorderFault(camera_id=settings.camera_id, kind="disk_low",
                                                             reason="120 MB free"))
        assert recorder.wait_drained(10)
        eventually(lambda: "recorder" in service.pipeline.view(utc_now()).last_errors)
        time.sleep(0.3)
        snap = service.tick()
        assert snap.camera_fault is None  # disk_low is not a camera fault; othercam's is not ours
        assert snap.last_errors["recorder"].reason == "disk_low: 120 MB free"


class _StartupCpu:
    """psutil.cpu_percent(interval=None) as it behaves: a reading over a tiny window after start-up is
    meaningless (the import burst: 100 %); over a second or more it is the real load (here 7 %)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def __call__(self, interval=None, percpu=False):
        now, last = time.monotonic(), self.last
        self.last = now
        return 100.0 if last is None or now - last < 1.0 else 7.0


def first_snapshot(settings, probes, listen) -> StatusSnapshot:
    """Start the status service as `ezrec status` runs it (its loop included); the first snapshot it publishes."""
    feed = listen(f"ezrec/{settings.camera_id}/status")
    bus = MqttBus(settings, "status")
    service = StatusService(settings, LocalStore(settings.data_dir), bus, probes=probes)
    subscribe(bus, service)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,))
    bus.start()
    thread.start()
    try:
        _, payload = feed.wait_for(lambda t, p: True, timeout=30)
    finally:
        stop.set()
        thread.join()
        bus.stop()
    return StatusSnapshot.model_validate_json(payload)


def test_the_first_snapshot_is_published_only_when_it_knows(make_settings, listen, plain_probes, monkeypatch):
    """It used to list every service `unknown` and CPU 100 % for the first minute."""
    import psutil

    monkeypatch.setattr(psutil, "cpu_percent", _StartupCpu())
    settings = make_settings(system_status_interval=60)
    base = f"ezrec/{settings.camera_id}"
    raw_publish_many(settings.mqtt_port, [  # what the broker retains for services already running
        (f"{base}/{service}/availability", b"online", True) for service in ("api", "recorder")])
    beat(settings, "worker", mqtt=True)
    started = time.monotonic()
    first = first_snapshot(settings, plain_probes, listen)
    took = time.monotonic() - started
    assert first.services == {"api": "online", "recorder": "online", "worker": "online", "status": "online"}
    assert first.cpu_percent == 7.0
    assert took < 5, took  # everything was known quickly: no need to wait out the full start-up window


def test_a_service_never_heard_of_is_offline_in_the_first_snapshot(make_settings, listen, plain_probes):
    settings = make_settings(system_status_interval=60)
    services = first_snapshot(settings, plain_probes, listen).services
    assert services == {"api": "offline", "recorder": "offline", "worker": "offline", "status": "online"}


def test_recording_now_is_what_the_recorder_says_in_its_heartbeat(make_settings, plain_probes):
    """The dashboard showed "Recording: nothing" during a recording: the status service only knew what it had
    heard on the bus. The recorder's heartbeat says what it records (every 5 s): that wins while fresh."""
    settings = make_settings()
    now = utc_now().replace(microsecond=0)
    with peer(settings, "api") as api:
        api.publish(api.topics.bookings, ScheduleSnapshot(camera_id=settings.camera_id, revision=1, bookings=[
            ScheduledBooking(id="live1", user_id="u1", start_time=now - timedelta(minutes=5),
                             end_time=now + timedelta(minutes=25), status="confirmed")]), retain=True)
        assert api.wait_drained(10)
    with running(settings, plain_probes) as service:
        eventually(lambda: service.pipeline.view(now).current_booking is not None)
        beat(settings, "recorder", mqtt=True, recording="live1")  # no recording/started was heard
        snap = service.tick()
        assert snap.recording_now == "live1" and snap.current_booking.id == "live1"
        service.pipeline.on_recording_started("t", RecordingStarted(booking_id="old", camera_id=settings.camera_id,
                                                                    first_frame_at=now))
        beat(settings, "recorder", mqtt=True, recording=None)  # its finished event was lost: the heartbeat knows
        assert service.tick().recording_now is None
        (settings.state_dir / "heartbeat-recorder.json").write_text(json.dumps({"pid": 1, "at": time.time() - 60,
                                                                                 "recording": "stale"}))
        assert service.tick().recording_now == "old"  # a stale heartbeat says nothing: the events decide
