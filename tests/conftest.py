from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from shared.settings import Settings
from tests.broker import Broker

_ids = itertools.count(1)
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def running_broker(broker: Broker) -> Broker:
    """The session broker, restarted if an earlier test stopped it."""
    if not broker.running:
        broker.start()
    return broker


@pytest.fixture
def camera_id() -> str:
    """Unique per test, so retained messages of one test never reach another."""
    return f"cam{os.getpid()}x{next(_ids)}"


@pytest.fixture
def make_settings(tmp_path: Path, running_broker: Broker, camera_id: str) -> Callable[..., Settings]:
    def _make(**overrides: object) -> Settings:
        values: dict[str, object] = dict(
            data_dir=tmp_path / "data", camera_id=camera_id, mqtt_port=running_broker.port, api_token=TOKEN,
            camera_width=320, camera_height=240, camera_fps=15, camera_warmup_s=1.0,
            booking_check_interval=1.0, video_worker_check_interval=1.0, encoder_preset="ultrafast",
        )
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        settings.ensure_dirs()
        return settings

    return _make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


class Listener:
    """A plain paho subscriber that records what arrives, for asserting on the wire."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_disconnect = lambda *_: self._subscribed.clear()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "listener could not subscribe"

    def wait_ready(self, timeout: float = 15.0) -> None:
        """After a broker restart: block until reconnected and subscribed again."""
        assert self._subscribed.wait(timeout), "listener did not resubscribe"

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str, bytes], bool], timeout: float = 10.0) -> tuple[str, bytes]:
        with self._cond:
            found = self._cond.wait_for(
                lambda: next(((t, p) for t, p, _ in self.messages if predicate(t, p)), None), timeout)
        if not found:
            raise AssertionError(f"no matching message within {timeout}s; got {[t for t, _, _ in self.messages]}")
        return found

    def close(self) -> None:
        self.client.disconnect()  # first: loop_stop() on a connected client waits out a 1 s select
        # After the disconnect the network thread ends and clears its own handle; paho's loop_stop() can read the
        # handle just before that and join None (AttributeError): the thread is gone either way.
        with contextlib.suppress(AttributeError):
            self.client.loop_stop()


@pytest.fixture
def listen(running_broker: Broker) -> Iterator[Callable[[str], Listener]]:
    listeners: list[Listener] = []

    def _listen(topic: str) -> Listener:
        listener = Listener(running_broker.port, topic)
        listeners.append(listener)
        return listener

    yield _listen
    for listener in listeners:
        listener.close()


@pytest.fixture
def run_worker(settings: Settings) -> Iterator[Callable[..., tuple]]:
    """`run_worker(store)`: a worker service (all its loops) on the real broker, stopped after the test."""
    from services.video_worker.service import build
    from shared.bus import MqttBus

    started: list[tuple[threading.Event, threading.Thread, MqttBus]] = []

    def _run(store):  # any Store
        bus = MqttBus(settings, "worker")
        worker = build(settings, store, bus)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        bus.start()
        thread.start()
        started.append((stop, thread, bus))
        return worker, bus

    yield _run
    for stop, thread, bus in started:
        stop.set()
        thread.join(timeout=30)
        bus.stop()
