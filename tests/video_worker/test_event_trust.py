"""Recording events are hints: whose video it is comes from the store, never from the event.

The worker in-process with a real broker, real files and the embedded store: a forged `recording/finished`
naming another user, a flood of events for bookings that do not exist, jobs such events left behind in
an older table, and the status service's `jobs_waiting` read from the same table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

import pytest

from services.status.service import StatusService
from services.video_worker import job_intake as intake_module
from services.video_worker.job_table import JobState, JobTable
from services.video_worker.service import build
from shared.bus import MqttBus
from shared.job_states import TABLE_FILE
from shared.models import BookingIn, BookingStatus
from shared.payloads import RecordingFinished, RecordingSegment
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import make_recording
from tests.status.conftest import not_a_pi
from tests.video_worker.segments import record_segments

HINT_WAIT_S = 2.0


@pytest.fixture
def worker_env(settings, monkeypatch):
    """(store, worker, bus, start): the worker built and connected; start() runs its loops."""
    monkeypatch.setattr(intake_module, "HINT_WAIT_S", HINT_WAIT_S)
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "worker")
    worker = build(settings, store, bus)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start() -> None:
        threads.append(threading.Thread(target=worker.run, args=(stop,)))
        threads[-1].start()

    bus.start()
    assert bus.wait_connected(10)
    yield store, worker, bus, start
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    bus.stop()


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _booking(settings, store, booking_id: str, user: str, seconds: float = 2.0) -> tuple:
    start = (utc_now() - timedelta(seconds=seconds + 2)).replace(microsecond=0)
    end = start + timedelta(seconds=seconds)
    store.create_bookings([BookingIn(id=booking_id, user_id=user, start_time=start, end_time=end)],
                          settings.camera_id)
    return start, end


def _finished_event(settings, booking_id: str, user: str, frames: int = 30) -> RecordingFinished:
    return RecordingFinished(booking_id=booking_id, camera_id=settings.camera_id, user_id=user,
                             file=f"{booking_id}.mp4", first_frame_at=utc_now(), last_frame_at=utc_now(),
                             frames=frames, size_bytes=1000)


def test_a_forged_finished_event_cannot_file_a_recording_under_another_user(settings, worker_env, listen, caplog):
    """alice's booking, recorded; an event names player1. The video is alice's."""
    caplog.set_level(logging.WARNING, logger="services.video_worker.job_intake")
    store, worker, bus, start = worker_env
    _booking(settings, store, "b1", "alice")
    store.advance_booking_status("b1", BookingStatus.completed)
    make_recording(settings.raw_dir / "b1.mp4", 2.0, size=(320, 240), fps=15)
    uploaded = listen(f"ezrec/{settings.camera_id}/video/uploaded")
    bus.publish(bus.topics.recording_finished, _finished_event(settings, "b1", "player1"))
    assert bus.wait_drained(10)
    start()
    _, payload = uploaded.wait_for(lambda t, p: json.loads(p)["booking_id"] == "b1", timeout=60)
    assert json.loads(payload)["storage_path"] == "alice/b1.mp4"
    [video] = store.list_videos(booking_id="b1")
    assert video.user_id == "alice" and video.storage_path == "alice/b1.mp4"
    assert store.list_videos(user_id="player1") == []
    assert any("names user player1" in r.getMessage() for r in caplog.records)


def test_a_forged_finished_event_mid_booking_does_not_decide_the_owner(settings, worker_env):
    """While alice's booking is still being recorded, a forged `finished` names player1 (no joined file
    exists yet). Her segments then arrive as usual: the video is still hers."""
    store, worker, bus, start_worker = worker_env
    start, end = _booking(settings, store, "m1", "alice", seconds=3.0)
    _, segments = record_segments(settings.raw_dir, "m1", "alice", start, [15, 15, 15], end=end)
    start_worker()
    bus.publish(bus.topics.recording_finished, _finished_event(settings, "m1", "player1", frames=45))
    assert _wait(lambda: worker.intake.held_events == 1, timeout=10), "held back: no joined file yet"
    assert worker.jobs.get("m1") is None
    for seg in segments:
        bus.publish(bus.topics.recording_segment, seg.event("m1", settings.camera_id, "player1"))
    assert _wait(lambda: store.get_booking("m1").status == BookingStatus.video_uploaded, timeout=60)
    [video] = store.list_videos(booking_id="m1")
    assert video.user_id == "alice" and video.storage_path == "alice/m1.mp4"
    assert {p.user_id for p in worker.jobs.parts("m1")} == {"alice"}


def test_events_for_unknown_bookings_are_ignored_after_a_bounded_wait(settings, worker_env, listen, caplog):
    """500 forged ids used to leave 500 pending jobs retried every 2 s, and jobs_waiting read 0."""
    caplog.set_level(logging.WARNING, logger="services.video_worker.job_intake")
    store, worker, bus, start = worker_env
    deadletters = listen("ezrec/deadletter")
    start()
    for i in range(150):
        bus.publish(bus.topics.recording_finished, _finished_event(settings, f"forged-{i}", "player1"))
    for i in range(30):
        bus.publish(bus.topics.recording_segment, RecordingSegment(
            booking_id=f"forged-seg-{i}", camera_id=settings.camera_id, user_id="player1", index=0,
            file=f"forged-seg-{i}/seg-00000.mp4", start_at=utc_now(), end_at=utc_now(), frames=15))
    assert bus.wait_drained(15)
    peak = 0
    deadline = time.monotonic() + HINT_WAIT_S + 20
    while time.monotonic() < deadline:
        peak = max(peak, worker.intake.held_events)
        assert worker.jobs.count(*JobState) == 0, "an event for an unknown booking never becomes a job"
        assert not any(worker.jobs.parts(f"forged-seg-{i}") for i in range(30))
        if peak and worker.intake.held_events == 0:
            break
        time.sleep(0.1)
    assert worker.intake.held_events == 0, "every held event is ignored once the wait is over"
    assert 0 < peak <= intake_module.MAX_HINTS, "memory stays bounded however many arrive"
    deadletters.wait_for(lambda t, p: len(deadletters.messages) >= 180, timeout=15)
    letters = [json.loads(p) for _, p, _ in deadletters.messages]
    assert all(d["service"] == "worker" and d["error"].startswith("ignored: ") for d in letters)
    assert {d["topic"] for d in letters} == {f"ezrec/{settings.camera_id}/recording/finished",
                                              f"ezrec/{settings.camera_id}/recording/segment"}
    assert any("not in the store" in r.getMessage() for r in caplog.records)


def test_jobs_left_by_forged_events_in_an_older_table_are_dropped(settings, worker_env, monkeypatch):
    store, worker, bus, start = worker_env
    table = worker.jobs
    for i in range(20):
        table.add(f"old-forged-{i}", "player1", f"old-forged-{i}.mp4", 30)
    _booking(settings, store, "real", "alice")
    store.advance_booking_status("real", BookingStatus.completed)
    table.add("real", "alice")  # known booking, its recording not joined yet: kept
    monkeypatch.setattr(intake_module, "HINT_WAIT_S", 0.0)
    start()
    assert _wait(lambda: table.count(JobState.pending) <= 1, timeout=20)
    assert table.get("real") is not None and table.get("old-forged-0") is None


def test_jobs_waiting_counts_the_worker_table_not_only_joined_files(settings):
    """A booking's video is assembled from its segments before any joined file exists: it is waiting."""
    table = JobTable(settings.state_dir / TABLE_FILE)
    table.add("kept", "alice", "kept.mp4")  # its recording is unreadable: failed, kept for a human
    owner = "w1/finish"
    assert table.claim(owner, [JobState.pending]).booking_id == "kept"
    table.fail("kept", owner, "recording unreadable")
    (settings.raw_dir / "kept.mp4").write_bytes(b"x")
    table.add("live", "alice")  # jobs assembled from segments: no RAW/<id>.mp4 yet
    table.add("live2", "bob")
    table.add("joined", "alice", "joined.mp4")
    (settings.raw_dir / "joined.mp4").write_bytes(b"x")
    (settings.raw_dir / "new.mp4").write_bytes(b"x")  # not picked up by a worker yet
    table.close()
    service = StatusService(settings, LocalStore(settings.data_dir), MqttBus(settings, "status"),
                            probes=not_a_pi(settings.data_dir / "probes"))
    snapshot = service.collect()
    assert snapshot.jobs_waiting == 4, "live, live2 (from segments), joined, new.mp4 (no job yet); not kept (failed)"
