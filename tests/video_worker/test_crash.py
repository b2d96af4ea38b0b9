"""kill -9 at every step that writes something, on a real worker process, then a restart.

Each case: the worker (with EZREC_TEST_CRASH_AT) dies by SIGKILL at the named point; the test checks
the disk right then (no half-written output under a final name, the recording still there), restarts
a plain worker and checks the end state: one videos row, the right frames, nothing left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared.models import BookingIn, BookingStatus, UserSettings
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import make_intro, make_logo_png, probe
from tests.video_worker.segments import frame_numbers, record_segments
from tests.video_worker.workers import WorkerProcesses, wait_for

FPS = 15
COUNTS = [15, 15, 12]
TOTAL = sum(COUNTS)
INTRO_FRAMES = FPS  # a 1 s intro


@pytest.fixture
def workers(tmp_path: Path, running_broker, camera_id):
    procs = WorkerProcesses(tmp_path / "data", camera_id, running_broker.port, tmp_path)
    yield procs
    procs.stop_all()


def _booking(data: Path, tmp_path: Path, camera_id: str, booking_id: str, *, joined: bool,
             logo: bool = True) -> tuple[LocalStore, Path]:
    """A finished booking with user media: as segments (worker's fast path) or as a joined recording only."""
    from shared.recordings.segments import join_segments

    store = LocalStore(data)
    start = (utc_now() - timedelta(seconds=TOTAL / FPS + 2)).replace(microsecond=0)
    end = start + timedelta(seconds=TOTAL / FPS)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start, end_time=end)], camera_id)
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
    logo_png = make_logo_png(tmp_path / "logo.png")
    store.put_object("media", "u1/media/intro-x.mp4", intro, "video/mp4")
    store.put_object("media", "u1/media/logo-x.png", logo_png, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4",
                                         logo_path="u1/media/logo-x.png" if logo else None))
    raw_dir = data / "recordings" / "raw"
    booking_dir, segments = record_segments(raw_dir, booking_id, "u1", start, COUNTS, fps=FPS, end=end)
    if joined:  # the recorder already joined and removed its segments: the worker must use the whole file
        join_segments([s.path for s in segments], booking_dir.target, start)
        shutil.rmtree(booking_dir.path)
        return store, booking_dir.target
    for seg in segments:  # closed by the recorder a while ago (no event: found by the worker's scan)
        os.utime(seg.path, (time.time() - 10, time.time() - 10))
    return store, booking_dir.path


def _leftovers(data: Path) -> list[str]:
    """Temp files anywhere a worker or the store writes (a prepared intro's temp aside: shared by all workers,
    it is removed once stale, never read as a cache entry)."""
    found = [*data.rglob(".*.tmp"), *data.rglob(".*.mp4.*")]
    return sorted({p.name for p in found if not p.name.startswith(".intro-")})


@pytest.mark.parametrize(("point", "joined", "logo"), [
    ("encode:20", True, True),  # mid-encode of the whole recording
    ("encode:20", False, True),  # mid-encode of a segment (after the intro's 15 frames): capture drew no logo
    ("join", False, True),  # mid-join of intro + segments
    ("remux_linked", False, False),  # a segment linked as the piece, not yet recorded as done (remux path)
    ("join", False, False),  # mid-join of intro + the recorder's segments as they are
    ("before_upload", False, True),
    ("after_object", True, True),  # object stored, videos row not written
    ("after_row", False, True),  # row written, job not marked done
])
def test_kill_9_then_restart_ends_with_one_complete_video(workers, tmp_path, camera_id, point, joined, logo):
    data = workers.data_dir
    store, recording = _booking(data, tmp_path, camera_id, "k1", joined=joined, logo=logo)
    first = workers.start("crash", EZREC_TEST_CRASH_AT=point)
    assert first.wait(timeout=90) == -signal.SIGKILL, workers.log("crash")[-3000:]

    output = data / "recordings" / "processed" / "k1.mp4"
    assert recording.exists(), "the recording is kept until the video is confirmed uploaded"
    if point.startswith("encode"):
        assert not output.exists(), "no output under its final name before it is complete"
        assert _leftovers(data), "the crash interrupted a write (the test must hit mid-write)"
    elif point == "join":  # killed at its first packet; a join kept as a splice writes nothing until the muxer is done
        assert not output.exists(), "no output under its final name before it is complete"
        assert not [n for n in _leftovers(data) if n.startswith(f".{output.name}.")], \
            "nothing of the splice on disk yet (a segment's encode may be mid-write beside it)"
    elif point == "remux_linked":
        assert not output.exists() and list((data / "recordings" / "processed" / "k1").glob("part-*.mp4"))
    else:
        assert probe(output)["frames"] == INTRO_FRAMES + TOTAL, "a processed video exists only complete"
    rows = store.list_videos(booking_id="k1")
    assert len(rows) == (1 if point == "after_row" else 0)
    assert store.object_exists("videos", "u1/k1.mp4") == (point in ("after_object", "after_row"))

    workers.start("restart")
    assert wait_for(lambda: store.get_booking("k1").status == BookingStatus.video_uploaded, 90), \
        workers.log("restart")[-3000:]
    [video] = store.list_videos(booking_id="k1")
    stored = store.local_object_path("videos", video.storage_path)
    assert probe(stored)["frames"] == INTRO_FRAMES + TOTAL
    assert frame_numbers(stored, skip=INTRO_FRAMES) == list(range(TOTAL))
    if not logo:  # capture's segments (no logo to draw) are the video: used as they are, even after the kill
        with sqlite3.connect(data / "state" / "worker-jobs.db") as db:
            assert db.execute("SELECT route FROM jobs WHERE booking_id = 'k1'").fetchone() == ("remux",)
    assert wait_for(lambda: not output.exists() and not (data / "recordings" / "processed" / "k1").exists(), 20)
    if joined:
        assert wait_for(lambda: not recording.exists(), 20), "the recording goes once its video is uploaded"
    assert _leftovers(data) == [], "temp files left behind"
