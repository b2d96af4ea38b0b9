"""The worker service end to end on its own: job intake, processing, upload, clean-up, retries."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from services.video_worker import jobs as jobs_module
from services.video_worker.service import build
from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus, UserSettings
from shared.payloads import RecordingFinished
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import make_intro, make_logo_png, make_recording, probe


class FlakyStore(LocalStore):
    """The cloud is away for the first `failures` uploads."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.upload_calls = 0

    def put_object(self, bucket, path, src, content_type):  # type: ignore[override]
        if bucket == "videos":
            self.upload_calls += 1
            if self.upload_calls <= self.failures:
                raise ConnectionError("cloud unreachable")
        return super().put_object(bucket, path, src, content_type)


def _setup(settings, store, tmp_path, booking_id="b1", with_media=True) -> Path:
    start = utc_now() - timedelta(seconds=10)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(seconds=2))], settings.camera_id)
    store.advance_booking_status(booking_id, BookingStatus.completed)
    raw = make_recording(settings.raw_dir / f"{booking_id}.mp4", 2.0, size=(320, 240), fps=15)
    if with_media:
        intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
        logo = make_logo_png(tmp_path / "logo.png")
        store.put_object("media", "u1/media/intro-x.mp4", intro, "video/mp4")
        store.put_object("media", "u1/media/logo-x.png", logo, "image/png")
        store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4",
                                             logo_path="u1/media/logo-x.png"))
    return raw


@pytest.fixture
def run_worker(settings):
    started: list[tuple[threading.Event, threading.Thread, MqttBus]] = []

    def _run(store):
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


def test_recording_finished_event_becomes_an_uploaded_video(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    raw = _setup(settings, store, tmp_path)
    uploaded = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    bus.publish(bus.topics.recording_finished, RecordingFinished(
        booking_id="b1", camera_id=settings.camera_id, user_id="u1", file="b1.mp4",
        first_frame_at=utc_now(), last_frame_at=utc_now(), frames=30, size_bytes=raw.stat().st_size))
    uploaded.wait_for(lambda t, p: t.endswith("/video/uploaded"), timeout=60)
    topics = [t.rsplit("/", 1)[-1] for t, _, _ in uploaded.messages if not t.endswith("progress")]
    assert topics.index("processed") < topics.index("uploaded")
    [video] = store.list_videos(booking_id="b1")
    assert video.storage_path == "u1/b1.mp4" and video.user_id == "u1"
    stored = store.local_object_path("videos", video.storage_path)
    info = probe(stored)
    assert abs(info["duration"] - 3.0) <= 2 / 15
    assert store.get_booking("b1").status == BookingStatus.video_uploaded
    assert not raw.exists() and not (settings.processed_dir / "b1.mp4").exists()


def test_missed_event_is_recovered_by_the_scan(settings, tmp_path, run_worker):
    store = LocalStore(settings.data_dir)
    _setup(settings, store, tmp_path, with_media=False)
    run_worker(store)  # no event published: the directory scan must find the recording
    deadline = utc_now() + timedelta(seconds=60)
    while utc_now() < deadline and store.get_booking("b1").status != BookingStatus.video_uploaded:
        threading.Event().wait(0.2)
    assert store.get_booking("b1").status == BookingStatus.video_uploaded
    assert len(store.list_videos(booking_id="b1")) == 1


def test_failed_uploads_retry_and_never_delete_the_only_copy(settings, tmp_path, run_worker, listen, monkeypatch):
    monkeypatch.setattr(jobs_module, "backoff_s", lambda attempts: 0.3)
    store = FlakyStore(settings.data_dir, failures=2)
    raw = _setup(settings, store, tmp_path, with_media=False)
    failures = listen(f"ezrec/{settings.camera_id}/video/failed")
    worker, _ = run_worker(store)
    failures.wait_for(lambda t, p: json.loads(p)["element"] == "upload", timeout=60)
    assert raw.exists() or (settings.processed_dir / "b1.mp4").exists(), "a local copy must remain"
    assert store.get_booking("b1").status != BookingStatus.video_uploaded
    deadline = utc_now() + timedelta(seconds=30)
    while utc_now() < deadline and store.get_booking("b1").status != BookingStatus.video_uploaded:
        threading.Event().wait(0.2)
    assert store.upload_calls == 3
    assert len(store.list_videos(booking_id="b1")) == 1
    assert not raw.exists()


def test_unreadable_recording_is_kept_and_reported(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    start = utc_now() - timedelta(seconds=10)
    store.create_bookings([BookingIn(id="bad", user_id="u1", start_time=start,
                                     end_time=start + timedelta(seconds=2))], settings.camera_id)
    raw = settings.raw_dir / "bad.mp4"
    raw.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    failed = listen(f"ezrec/{settings.camera_id}/video/failed")
    run_worker(store)
    _, payload = failed.wait_for(lambda t, p: json.loads(p)["booking_id"] == "bad", timeout=30)
    event = json.loads(payload)
    assert event["element"] == "recording" and event["final"] is True
    assert raw.exists(), "an unreadable recording is evidence: never deleted"
