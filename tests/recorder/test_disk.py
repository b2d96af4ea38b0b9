"""Disk guard: reclaim only already-uploaded files, oldest first; if still low, stop cleanly and report."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.recorder.disk import MB
from shared.models import BookingIn, BookingStatus
from shared.store import LocalStore
from tests.recorder.conftest import decoded_frames, frame_times, recording, whole_second

FILE_BYTES = 600_000


class SimulatedDisk:
    """Free space = a fixed capacity minus what is stored under `root`: deleting a file really frees space."""

    def __init__(self, root: Path, free_when_empty: int) -> None:
        self.root, self.free_when_empty = root, free_when_empty

    def __call__(self) -> int:
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return self.free_when_empty - used


def _past_booking(store: LocalStore, camera_id: str, booking_id: str, hours_ago: int, status: BookingStatus) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=100 - hours_ago)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], camera_id)
    for step in (BookingStatus.completed, BookingStatus.video_processed, BookingStatus.video_uploaded):
        if step.rank <= status.rank:
            store.advance_booking_status(booking_id, step)


def _file(path: Path, age_s: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(FILE_BYTES))
    stamp = datetime.now().timestamp() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_low_disk_before_a_booking_reclaims_the_oldest_uploaded_file_only(start_recorder, make_settings, listen):
    settings = make_settings()
    store = LocalStore(settings.data_dir)
    cam = settings.camera_id
    _past_booking(store, cam, "keep", 30, BookingStatus.completed)  # the only copy: never deleted
    _past_booking(store, cam, "old-up", 20, BookingStatus.video_uploaded)
    _past_booking(store, cam, "new-up", 10, BookingStatus.video_uploaded)
    keep = _file(settings.raw_dir / "keep.mp4", 3000)
    old_up = _file(settings.raw_dir / "old-up.mp4", 2000)
    new_up = _file(settings.processed_dir / "new-up.mp4", 1000)
    recordings = settings.data_dir / "recordings"
    disk = SimulatedDisk(recordings, free_when_empty=MB + 3 * FILE_BYTES - 200_000)  # 200 kB short
    env = start_recorder(disk_probe=disk, min_free_disk_mb=1, segment_seconds=10.0)
    finished = listen(f"ezrec/{cam}/recording/finished")

    start = whole_second(1.0)
    env.book(("fits", start, start + timedelta(seconds=1.2)))
    finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "fits", timeout=20)
    assert not old_up.exists(), "the oldest uploaded file made room"
    assert new_up.exists(), "no more was deleted than needed"
    assert keep.exists(), "a file whose video is not uploaded is never deleted, however old"
    assert len(frame_times(env.raw / "fits.mp4")) == round(1.2 * env.settings.camera_fps)


def test_disk_running_out_mid_booking_stops_cleanly_keeps_what_was_recorded_and_reports(start_recorder, listen):
    disk = {"full": False}
    env = start_recorder(disk_probe=lambda: 0 if disk["full"] else 10**12, min_free_disk_mb=1)
    cam = env.settings.camera_id
    faults = listen(f"ezrec/{cam}/recorder/fault")
    finished = listen(f"ezrec/{cam}/recording/finished")
    segments = listen(f"ezrec/{cam}/recording/segment")
    other = env.raw / "other.mp4"
    _past_booking(env.store, cam, "other", 5, BookingStatus.completed)
    other.write_bytes(b"not uploaded yet")

    start = whole_second(1.0)
    end = start + timedelta(seconds=3.5)
    env.book(("squeezed", start, end))
    segments.wait_for(lambda t, p: json.loads(p)["index"] == 0, timeout=15)
    disk["full"] = True  # checked at the next rotation (1 s segments)
    _, fault = faults.wait_for(lambda t, p: json.loads(p)["kind"] == "disk_low", timeout=10)
    assert json.loads(fault)["booking_id"] == "squeezed" and json.loads(fault)["active"]

    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "squeezed", timeout=20)
    video = recording(env.raw / "squeezed.mp4")
    times = frame_times(video)
    assert times[0] - start < timedelta(seconds=0.1)
    assert times[-1] < start + timedelta(seconds=2.1), "stopped at a segment boundary once the disk was low"
    assert json.loads(payload)["frames"] == len(times) == decoded_frames(video), "closed properly, fully playable"
    assert env.store.get_booking("squeezed").status == BookingStatus.completed
    low = [json.loads(p) for _, p, _ in faults.messages if json.loads(p)["kind"] == "disk_low"]
    assert len(low) == 1, "a persisting low disk is reported once, not on every check"
    assert other.exists()
