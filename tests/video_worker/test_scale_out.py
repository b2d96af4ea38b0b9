"""Two real worker processes on one DATA_DIR and the real broker share the work; one is killed mid-job.

Events reach the workers through the MQTT v5 shared subscription ($share/workers/...), each to one of
them; jobs are claimed from the shared table under a short lease. Expected: both workers upload
videos, every booking is uploaded exactly once with one videos row, and the job of the killed worker
is finished by the other once its lease has run out.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus, UserSettings
from shared.payloads import RecordingFinished
from shared.recordings.segments import join_segments
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import make_intro, probe
from tests.video_worker.segments import frame_numbers, record_segments
from tests.video_worker.workers import WorkerProcesses, wait_for

FPS = 15
BOOKINGS = [f"job{i}" for i in range(6)]
FRAMES = 30
LEASE_S = 2


@pytest.fixture
def workers(tmp_path: Path, running_broker, camera_id):
    procs = WorkerProcesses(tmp_path / "data", camera_id, running_broker.port, tmp_path)
    yield procs
    procs.stop_all()


def test_two_workers_split_the_load_and_survive_one_killed_mid_job(workers, make_settings, tmp_path, camera_id,
                                                                   listen):
    settings = make_settings()
    store = LocalStore(settings.data_dir)
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
    store.put_object("media", "u1/media/intro-x.mp4", intro, "video/mp4")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4"))
    start = (utc_now() - timedelta(minutes=30)).replace(microsecond=0)
    raws = {}
    for i, booking_id in enumerate(BOOKINGS):
        begin = start + timedelta(minutes=i)
        store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=begin,
                                         end_time=begin + timedelta(seconds=FRAMES / FPS))], camera_id)
        booking_dir, segments = record_segments(tmp_path / "recorder", booking_id, "u1", begin, [FRAMES], fps=FPS,
                                                first_number=100 * i)
        raws[booking_id] = join_segments([s.path for s in segments], settings.raw_dir / f"{booking_id}.mp4",
                                         begin).path
    events = listen(f"ezrec/{camera_id}/video/#")
    slow = {"WORKER_LEASE_S": str(LEASE_S), "EZREC_TEST_FRAME_DELAY_S": "0.04"}  # ~2 s per booking
    a = workers.start("a", WORKER_ID="a", **slow)
    workers.start("b", WORKER_ID="b", **slow)
    assert wait_for(lambda: "connected to MQTT" in workers.log("a") and "connected to MQTT" in workers.log("b"), 30)

    publisher = MqttBus(settings, "recorder", client_id=f"test-recorder-{camera_id}")
    publisher.start()
    try:
        for booking_id, raw in raws.items():
            publisher.publish(publisher.topics.recording_finished, RecordingFinished(
                booking_id=booking_id, camera_id=camera_id, user_id="u1", file=raw.name, first_frame_at=utc_now(),
                last_frame_at=utc_now(), frames=FRAMES, size_bytes=raw.stat().st_size))
        assert publisher.wait_drained(10)
    finally:
        publisher.stop()

    def video_events(kind: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in events.messages if t.endswith(f"/video/{kind}")]

    # Let `a` finish one video, then kill it while it works on another.
    assert wait_for(lambda: any(e["worker"] == "a" for e in video_events("uploaded")), 60), workers.log("a")[-2000:]
    uploaded_by_a = {e["booking_id"] for e in video_events("uploaded") if e["worker"] == "a"}
    jobs_db = settings.state_dir / "worker-jobs.db"

    def held_by_a() -> list[str]:
        with sqlite3.connect(jobs_db) as db:
            rows = db.execute("SELECT booking_id FROM jobs WHERE owner LIKE 'a/%' AND state = 'pending'")
            return [r[0] for r in rows]

    def a_mid_job() -> bool:
        held = held_by_a()
        return bool(held) and held[0] not in uploaded_by_a and any(
            e["worker"] == "a" and e["booking_id"] == held[0] and e["percent"] < 100 for e in video_events("progress"))

    assert wait_for(a_mid_job, 60, every=0.02), "a never started a second job"
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    killed_at = datetime.now(UTC)
    held = held_by_a()
    assert len(held) == 1, f"a was killed mid-job: {held}"
    victim = held[0]

    assert wait_for(lambda: all(store.get_booking(b).status == BookingStatus.video_uploaded for b in BOOKINGS), 90), \
        workers.log("b")[-3000:]
    # The status turns uploaded before the worker publishes `video/uploaded`: wait for the last event to arrive.
    assert wait_for(lambda: len(video_events("uploaded")) >= len(BOOKINGS), 15)
    uploads = video_events("uploaded")
    assert sorted(e["booking_id"] for e in uploads) == sorted(BOOKINGS), "each booking uploaded exactly once"
    assert {e["worker"] for e in uploads} == {"a", "b"}, "the load was shared"
    assert next(e["worker"] for e in uploads if e["booking_id"] == victim) == "b", "b finished a's job"
    processed = [e["booking_id"] for e in video_events("processed")]
    assert sorted(processed) == sorted(BOOKINGS), "no job processed twice"
    for i, booking_id in enumerate(BOOKINGS):
        [video] = store.list_videos(booking_id=booking_id)
        stored = store.local_object_path("videos", video.storage_path)
        assert probe(stored)["frames"] == FPS + FRAMES
        assert frame_numbers(stored, skip=FPS) == list(range(100 * i, 100 * i + FRAMES))
        assert not raws[booking_id].exists()
    # The events were shared out: each went to exactly one worker.
    received = {w: re.findall(r"recording/finished for booking (\w+)", workers.log(w)) for w in ("a", "b")}
    assert sorted(received["a"] + received["b"]) == sorted(BOOKINGS), received
    assert received["a"] and received["b"], received
    b_started = min(datetime.fromisoformat(e["sent_at"]) for e in video_events("progress")
                    if e["worker"] == "b" and e["booking_id"] == victim)
    assert (b_started - killed_at).total_seconds() >= LEASE_S / 2, "b took over only once a's lease ran out"
    leftovers = [p.name for p in (settings.processed_dir).rglob(".*")]
    assert leftovers == [], f"temp files of the killed worker left behind: {leftovers}"
