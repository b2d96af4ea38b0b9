"""The recorder with the synthetic camera, a real broker and real files."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import av
import pytest

from services.recorder.service import build
from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus
from shared.schedule_cache import write_snapshot
from shared.store import LocalStore
from shared.timeutil import utc_now


def _whole_second(offset_s: float) -> datetime:
    return (utc_now() + timedelta(seconds=offset_s)).replace(microsecond=0)


@pytest.fixture
def recorder_env(settings):
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "recorder")
    recorder = build(settings, store, bus)
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,))

    def book(*items: tuple[str, datetime, datetime]) -> None:
        store.create_bookings([BookingIn(id=i, user_id="u1", start_time=s, end_time=e) for i, s, e in items],
                              settings.camera_id)
        write_snapshot(settings.bookings_cache_path, settings.camera_id, store.list_bookings())

    bus.start()
    thread.start()
    yield store, book
    stop.set()
    thread.join(timeout=30)
    bus.stop()


def _frame_times(path, origin: datetime) -> list[datetime]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(origin + timedelta(seconds=float(p.pts * s.time_base))
                      for p in c.demux(s) if p.size and p.pts is not None)


def test_records_the_booked_window_exactly(settings, recorder_env, listen):
    store, book = recorder_env
    finished = listen(f"ezrec/{settings.camera_id}/recording/finished")
    start = _whole_second(2.5)
    end = start + timedelta(seconds=2)
    book(("exact", start, end))
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "exact", timeout=20)
    manifest = json.loads(payload)
    raw = settings.raw_dir / "exact.mp4"
    assert manifest["file"] == "exact.mp4" and raw.exists()
    assert not (settings.raw_dir / "exact").exists(), "parts are removed once joined"
    times = _frame_times(raw, start)
    fps = settings.camera_fps
    assert abs((times[0] - start).total_seconds()) <= 1 / fps
    assert abs((times[-1] - (end - timedelta(seconds=1 / fps))).total_seconds()) <= 1 / fps
    assert abs(len(times) - 2 * fps) <= 1 and manifest["frames"] == len(times)
    with open(raw, "rb") as fh:
        head = fh.read(4096)
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    assert store.get_booking("exact").status == BookingStatus.completed


def test_back_to_back_bookings_make_two_files_with_no_gap(settings, recorder_env, listen):
    store, book = recorder_env
    finished = listen(f"ezrec/{settings.camera_id}/recording/finished")
    a = _whole_second(2.5)
    b = a + timedelta(seconds=2)
    book(("first", a, b), ("second", b, b + timedelta(seconds=2)))
    finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "second", timeout=25)
    first = _frame_times(settings.raw_dir / "first.mp4", a)
    second = _frame_times(settings.raw_dir / "second.mp4", b)
    step = timedelta(seconds=1 / settings.camera_fps)
    assert second[0] - first[-1] <= step * 1.5, "frames lost between back-to-back bookings"
    assert first[-1] < b <= second[0]


def test_other_cameras_bookings_are_ignored(settings, recorder_env, listen):
    store, _ = recorder_env
    start = _whole_second(1.5)
    store.create_bookings([BookingIn(id="elsewhere", user_id="u1", camera_id="othercam", start_time=start,
                                     end_time=start + timedelta(seconds=1))], settings.camera_id)
    write_snapshot(settings.bookings_cache_path, "othercam", store.list_bookings())
    threading.Event().wait(4)
    assert not (settings.raw_dir / "elsewhere.mp4").exists()
    assert not (settings.raw_dir / "elsewhere").exists()
