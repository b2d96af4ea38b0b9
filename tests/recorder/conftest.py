"""The recorder in-process with a real broker, real files and the synthetic camera (or a wrapper of it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest

from services.recorder.camera import Camera, CapturedFrame
from services.recorder.disk import FreeSpaceProbe
from services.recorder.service import Recorder, build
from services.recorder.writer import EncodeSpec, SegmentWriter
from shared.bus import MqttBus
from shared.models import BookingIn
from shared.recordings.layout import FINISHED_NAME, BookingDir
from shared.recordings.segments import join_segments
from shared.recordings.timeline import capture_times
from shared.schedule_cache import write_snapshot
from shared.settings import Settings
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now

FAST = dict(camera_warmup_s=0.5, segment_seconds=1.0, camera_stall_s=1.0, booking_check_interval=1.0)
"""Test defaults: short warm-up and 1 s segments, so a 2-3 s booking spans several segments."""


def whole_second(offset_s: float) -> datetime:
    """Bookings on whole seconds start exactly on a frame of the epoch-aligned synthetic camera."""
    return (utc_now() + timedelta(seconds=offset_s)).replace(microsecond=0) + timedelta(seconds=1)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def finished(path: Path) -> bool:
    """RAW/<id>.mp4 names a booking's recording: since issue 12 its segment folder, marked finished by the
    recorder (RAW/<id>/.finished.json), kept as it is; a joined file only from an older recorder."""
    folder = path.with_suffix("")
    return path.is_file() or (folder / FINISHED_NAME).is_file()


def recording(path: Path) -> Path:
    """The recording named RAW/<id>.mp4 as one file to inspect: its finished segments joined (as the worker's
    whole-recording fallback joins them) into a scratch folder beside RAW, never into RAW itself."""
    if path.is_file():
        return path
    folder = BookingDir(path.parent, path.stem)
    meta = folder.read_meta()
    assert folder.read_finished() is not None and meta is not None, f"{folder.path} is not a finished recording"
    target = path.parent.parent / "test-joined" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = join_segments(folder.segments(), target, meta.origin)
    announced = folder.read_finished()
    assert announced is not None and (announced.frames, announced.first_frame_at, announced.last_frame_at) == (
        joined.frames, joined.first_frame_at, joined.last_frame_at), "the recorder's count (its running tally) is " \
        "not what a join of its segments holds"
    return target


def frame_times(path: Path) -> list[datetime]:
    """Capture times of every frame in a recording, read back from the file (its stamp and timestamps)."""
    return capture_times(recording(path))


def decoded_frames(path: Path) -> int:
    """Decodes the whole file (raises on a broken stream): what a player would manage to show."""
    with av.open(str(recording(path))) as c:
        return sum(1 for _ in c.decode(video=0))


def booking_json(booking_id: str, start: datetime | str, end: datetime | str, user_id: str = "u1",
                 status: str = "confirmed") -> dict[str, Any]:
    def as_text(value: datetime | str) -> str:
        return isoformat_z(value) if isinstance(value, datetime) else value

    return {"id": booking_id, "user_id": user_id, "start_time": as_text(start), "end_time": as_text(end),
            "status": status}


@dataclass
class RecorderEnv:
    settings: Settings
    store: LocalStore
    bus: MqttBus
    recorder: Recorder
    stop: threading.Event
    thread: threading.Thread
    revision: int = 0
    extra: list[Any] = field(default_factory=list)

    @property
    def raw(self) -> Path:
        return self.settings.raw_dir

    def book(self, *items: tuple[str, datetime, datetime]) -> None:
        """As the API does: store rows, then the cache file (the recorder also follows MQTT)."""
        self.store.create_bookings([BookingIn(id=i, user_id="u1", start_time=s, end_time=e) for i, s, e in items],
                                   self.settings.camera_id)
        write_snapshot(self.settings.bookings_cache_path, self.settings.camera_id, self.store.list_bookings())

    def publish_schedule(self, bookings: list[dict[str, Any]], camera_id: str | None = None) -> None:
        """A retained snapshot on the bookings topic, built by hand (so it may be malformed on purpose)."""
        self.revision += 1
        camera = camera_id or self.settings.camera_id
        payload = {"v": 1, "sent_at": isoformat_z(utc_now()), "camera_id": camera,
                   "revision": time.time_ns() // 1000 + self.revision, "bookings": bookings}
        mqtt_publish.single(f"ezrec/{camera}/bookings", json.dumps(payload), qos=1, retain=True,
                            hostname="127.0.0.1", port=self.settings.mqtt_port, protocol=mqtt.MQTTv5)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.bus.stop()
        for topic in (f"ezrec/{self.settings.camera_id}/bookings",):
            mqtt_publish.single(topic, b"", qos=1, retain=True, hostname="127.0.0.1",
                                port=self.settings.mqtt_port, protocol=mqtt.MQTTv5)


StartRecorder = Callable[..., RecorderEnv]


@pytest.fixture
def start_recorder(make_settings: Callable[..., Settings]) -> Iterator[StartRecorder]:
    envs: list[RecorderEnv] = []

    def _start(camera_factory: Callable[[], Camera] | None = None, disk_probe: FreeSpaceProbe | None = None,
               **overrides: object) -> RecorderEnv:
        settings = make_settings(**{**FAST, **overrides})
        store = LocalStore(settings.data_dir)
        bus = MqttBus(settings, "recorder")
        recorder = build(settings, store, bus, camera_factory=camera_factory, disk_probe=disk_probe)
        stop = threading.Event()
        thread = threading.Thread(target=recorder.run, args=(stop,), name="test-recorder")
        bus.start()
        assert bus.wait_connected(10)
        thread.start()
        env = RecorderEnv(settings, store, bus, recorder, stop, thread)
        envs.append(env)
        return env

    yield _start
    for env in envs:
        env.close()


def payload_of(listener_messages: list[tuple[str, bytes, bool]], key: str, value: Any) -> list[dict[str, Any]]:
    out = []
    for _topic, payload, _retained in listener_messages:
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get(key) == value:
            out.append(data)
    return out


def encode_segment(path: Path, spec: EncodeSpec, count: int, t0: datetime, fps: int) -> SegmentWriter:
    """`count` lavfi testsrc2 frames through the recorder's own SegmentWriter, captured 1/fps apart from `t0`."""
    writer = SegmentWriter(path, t0, encode=spec)
    with av.open(f"testsrc2=size={spec.width}x{spec.height}:rate={fps}", format="lavfi") as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i == count:
                break
            writer.write(CapturedFrame(frame, t0 + timedelta(seconds=i / fps)))
    writer.close()
    return writer
