"""The MQTT bus against a real Mosquitto: durability, availability, dead letters."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from shared.bus import MqttBus
from shared.payloads import MediaUpdated, VideoProgress
from shared.topics import DEADLETTER, MEDIA_UPDATED


def _progress(i: int) -> VideoProgress:
    return VideoProgress(booking_id="b1", percent=float(i), fps=1.0)


def test_publishes_made_while_broker_down_arrive_in_order(settings, running_broker, listen):
    topic = f"ezrec/{settings.camera_id}/video/progress"
    listener = listen(topic)
    running_broker.stop()
    bus = MqttBus(settings, "worker")
    bus.start()
    try:
        for i in range(20):
            bus.publish(topic, _progress(i))
        assert bus.outbox.pending_count() == 20
        running_broker.start()
        listener.wait_ready()
        assert bus.wait_drained(15), "outbox did not drain after the broker came back"
        listener.wait_for(lambda t, p: json.loads(p)["percent"] == 19.0, timeout=10)
        got = [json.loads(p)["percent"] for t, p, _ in listener.messages]
        assert got == sorted(got) and set(got) == {float(i) for i in range(20)}
    finally:
        bus.stop()


def test_outbox_survives_a_process_that_dies_before_sending(settings, running_broker, listen, tmp_path):
    """kill -9 with messages only on disk: the next process start sends them."""
    topic = f"ezrec/{settings.camera_id}/video/progress"
    listener = listen(topic)
    outbox = tmp_path / "outbox.db"
    running_broker.stop()
    script = textwrap.dedent(f"""
        import os, signal
        from shared.bus import MqttBus
        from shared.payloads import VideoProgress
        from shared.settings import Settings
        s = Settings(_env_file=None, data_dir={str(settings.data_dir)!r}, camera_id={settings.camera_id!r},
                     mqtt_port={running_broker.port})
        bus = MqttBus(s, "worker", outbox_path=__import__('pathlib').Path({str(outbox)!r}))
        bus.start()
        for i in range(5):
            bus.publish({topic!r}, VideoProgress(booking_id="b1", percent=float(i), fps=1.0))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent, timeout=30)
    assert proc.returncode == -9
    running_broker.start()
    listener.wait_ready()
    bus = MqttBus(settings, "worker", outbox_path=outbox)
    bus.start()
    try:
        assert bus.wait_drained(15)
        listener.wait_for(lambda t, p: json.loads(p)["percent"] == 4.0)
        assert sorted(json.loads(p)["percent"] for _, p, _ in listener.messages) == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        bus.stop()


@pytest.fixture
def media_subscriber(settings):
    """A worker bus subscribed to media/updated (what it handled, and an event set at the first) and an API bus
    to send from; both connected."""
    received: list[MediaUpdated] = []
    got_valid = threading.Event()

    def handler(_topic: str, event: MediaUpdated) -> None:
        received.append(event)
        got_valid.set()

    bus = MqttBus(settings, "worker")
    bus.subscribe(MEDIA_UPDATED, MediaUpdated, handler)
    bus.start()
    sender = MqttBus(settings, "api")
    sender.start()
    try:
        assert bus.wait_connected(10) and sender.wait_connected(10)
        yield received, got_valid, sender
    finally:
        bus.stop()
        sender.stop()


def test_malformed_payload_goes_to_dead_letter_and_subscriber_keeps_working(media_subscriber, listen):
    dead = listen(DEADLETTER)
    received, got_valid, sender = media_subscriber
    raw = sender._client  # raw bytes on the wire, as a buggy or hostile publisher would send
    raw.publish(MEDIA_UPDATED, b"{not json", qos=1)
    raw.publish(MEDIA_UPDATED, json.dumps({"v": 1, "user_id": "../etc", "kind": "intro"}), qos=1)
    raw.publish(MEDIA_UPDATED, json.dumps({"v": 2, "user_id": "u1", "kind": "intro"}), qos=1)
    sender.publish(MEDIA_UPDATED, MediaUpdated(user_id="u1", kind="logo"))
    assert got_valid.wait(10), "a valid message after bad ones was not handled"
    assert [e.user_id for e in received] == ["u1"] and received[0].kind == "logo"
    dead.wait_for(lambda t, p: len(dead.messages) >= 3)
    letters = [json.loads(p) for _, p, _ in dead.messages]
    assert {letter["topic"] for letter in letters} == {MEDIA_UPDATED}
    assert any("{not json" in letter["payload"] for letter in letters)
    assert any("user_id" in letter["error"] for letter in letters)
    assert any(letter["error"].startswith("invalid MediaUpdated: v") for letter in letters)


def test_availability_online_retained_and_offline_on_kill(settings, running_broker, listen):
    topic = f"ezrec/{settings.camera_id}/recorder/availability"
    script = textwrap.dedent(f"""
        import time
        from shared.bus import MqttBus
        from shared.settings import Settings
        s = Settings(_env_file=None, data_dir={str(settings.data_dir)!r}, camera_id={settings.camera_id!r},
                     mqtt_port={running_broker.port})
        bus = MqttBus(s, "recorder")
        bus.start()
        bus.wait_connected(10)
        print("up", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        # `up` means connected: the `online` may still be on its way to the broker, so a subscriber this
        # early can get it live (retain flag 0). Once one has seen it, a later subscriber must get it retained.
        listen(topic).wait_for(lambda t, p: p == b"online")
        late = listen(topic)  # subscribes after the fact: sees the retained value
        late.wait_for(lambda t, p: p == b"online")
        assert late.messages[0][2] is True, "availability must be retained"
        proc.kill()
        late.wait_for(lambda t, p: p == b"offline", timeout=30)
    finally:
        proc.kill()
        proc.wait()


def test_a_time_beyond_the_calendar_after_its_offset_is_dead_lettered_and_the_subscriber_lives(media_subscriber,
                                                                                              listen):
    """Found by the property tests: `0001-01-01T00:00:00+01:00` is a valid ISO time whose UTC value is before
    year 1; converting it raised OverflowError, not a validation error, out of paho's network thread."""
    dead = listen(DEADLETTER)
    received, got_valid, sender = media_subscriber
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        sender._client.publish(MEDIA_UPDATED, json.dumps({"v": 1, "sent_at": edge, "user_id": "u1",
                                                          "kind": "intro"}), qos=1)
    sender.publish(MEDIA_UPDATED, MediaUpdated(user_id="u2", kind="logo"))
    assert got_valid.wait(10), "the subscriber died on a time out of range"
    assert [e.user_id for e in received] == ["u2"]
    dead.wait_for(lambda t, p: len(dead.messages) >= 2)
    assert all("sent_at" in json.loads(p)["error"] for _, p, _ in dead.messages)
