"""Cloud mode and the disk guard: the mirror keeps a copy of every video put_object stored, so the guard must
be able to free the copies the cloud has confirmed (oldest first), and never one whose upload is pending or
was refused; otherwise a cloud-backed device fills its disk and stops recording. Against the fake cloud."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.recorder.disk import MB, DiskGuard
from services.recorder.service import build
from services.status.service import StatusService
from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus, Video, storage_path_for_video, video_id_for
from shared.schedule_cache import write_snapshot
from shared.store import LocalStore
from shared.store.cloud import store as cloud_store
from shared.store.cloud.store import exclusive
from shared.timeutil import utc_now
from tests.recorder.conftest import FAST, frame_times, whole_second
from tests.supabase.conftest import drain

SIZE = 600_000


class SimulatedDisk:
    """Free space = a fixed capacity minus the files (mirror and recordings) under DATA_DIR: deleting one really
    frees space. The SQLite databases are left out, so their journals cannot move the figures."""

    def __init__(self, data_dir: Path, free_when_empty: int) -> None:
        self.roots, self.free_when_empty = (data_dir / "files", data_dir / "recordings"), free_when_empty

    def __call__(self) -> int:
        return self.free_when_empty - sum(p.stat().st_size for r in self.roots for p in r.rglob("*") if p.is_file())


def _finished_video(store, tmp_path: Path, booking_id: str, hours_ago: int, *,
                    content_type: str = "video/mp4") -> Path:
    """A past booking whose video the worker made and stored (object, row, `video_uploaded`, source removed);
    returns its mirror copy, dated `hours_ago`."""
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=100 - hours_ago)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], store.settings.camera_id)
    store.advance_booking_status(booking_id, BookingStatus.completed)
    store.advance_booking_status(booking_id, BookingStatus.video_processed)
    src = tmp_path / "processed" / f"{booking_id}.mp4"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(os.urandom(SIZE))
    path = storage_path_for_video("u1", booking_id)
    store.put_object("videos", path, src, content_type)
    store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1",
                             camera_id=store.settings.camera_id, storage_path=path, size_bytes=SIZE,
                             duration_seconds=1.0, uploaded_at=utc_now()))
    store.advance_booking_status(booking_id, BookingStatus.video_uploaded)
    src.unlink()  # the worker's clean-up: the mirror is now the only copy on the device
    mirror = store.local_object_path("videos", path)
    assert mirror is not None
    stamp = time.time() - hours_ago * 3600
    os.utime(mirror, (stamp, stamp))
    return mirror


def _mirrors(store, tmp_path: Path) -> dict[str, Path]:
    """Two confirmed uploads, one refused (the bucket rejects its type) and one still pending (never drained),
    the pending and refused ones the oldest, so age alone would pick them first."""
    old_up = _finished_video(store, tmp_path, "old-up", 30)
    new_up = _finished_video(store, tmp_path, "new-up", 20)
    drain(store)
    refused = _finished_video(store, tmp_path, "refused", 40, content_type="text/plain")
    store.sync_now()  # one pass: the refused upload stays in the outbox as failed (its key's later writes wait)
    assert [(key, kind) for _, key, kind, _ in store.outbox.rejected()] == [("refused", "object_put")]
    pending = _finished_video(store, tmp_path, "pending", 50)
    assert store.outbox.has_pending("pending", "object_put")
    return {"refused": refused, "old_up": old_up, "new_up": new_up, "pending": pending}


def test_low_disk_frees_the_oldest_confirmed_mirror_never_a_pending_or_refused_one(
        store, cloud_settings, fake_cloud, tmp_path):
    files = _mirrors(store, tmp_path)
    assert store.reclaimable_files() == [files["old_up"], files["new_up"]]

    disk = SimulatedDisk(cloud_settings.data_dir, free_when_empty=MB + 4 * SIZE - 200_000)  # 200 kB short
    guard = DiskGuard(cloud_settings.raw_dir, cloud_settings.processed_dir, 1, store, disk)
    assert guard.ensure(), "a confirmed mirror copy made room"
    assert not files["old_up"].exists(), "the oldest confirmed copy went first"
    assert files["new_up"].exists(), "no more was deleted than needed"
    assert files["pending"].exists() and files["refused"].exists()
    assert fake_cloud.object_file("videos", "u1/old-up.mp4").stat().st_size == SIZE, "the cloud still has it"

    disk.free_when_empty = MB + 2 * SIZE - 200_000  # now short even with every confirmed copy gone
    assert not guard.ensure(), "still low: the recorder stops and reports"
    assert not files["new_up"].exists()
    assert files["pending"].exists(), "an upload still queued is the only copy: never deleted"
    assert files["refused"].exists(), "a refused upload is the only copy, kept for a human: never deleted"

    store.sync_now()  # the pending upload reaches the cloud: from now on its copy may go too
    assert not store.outbox.has_pending("pending", "object_put")
    assert store.reclaimable_files() == [files["pending"]]


def test_a_copy_whose_new_upload_was_queued_after_the_listing_is_kept(store, tmp_path, monkeypatch):
    files = _mirrors(store, tmp_path)
    listed = store.reclaimable_files()
    assert listed == [files["old_up"], files["new_up"]]
    # The worker makes old-up's video again (settle_raw found frames missing) and stores the new bytes.
    again = tmp_path / "again.mp4"
    again.write_bytes(os.urandom(SIZE))
    store.put_object("videos", "u1/old-up.mp4", again, "video/mp4")
    assert not store.reclaim_file(listed[0]), "checked again: the new bytes are not in the cloud yet"
    assert files["old_up"].read_bytes() == again.read_bytes()

    monkeypatch.setattr(cloud_store, "MIRROR_LOCK_WAIT_S", 0.1)
    with exclusive(store.mirror_lock):  # a put_object in progress (in any process) holds the mirror lock
        assert not store.reclaim_file(listed[1])
    assert store.reclaim_file(listed[1]) and not files["new_up"].exists()
    assert store.local_object_path("videos", "u1/new-up.mp4") is None
    assert store.object_exists("videos", "u1/new-up.mp4"), "the object itself is still there, in the cloud"
    assert not store.reclaim_file(files["pending"]) and not store.reclaim_file(files["refused"])
    assert not store.reclaim_file(tmp_path / "again.mp4"), "only the store's own mirror copies"


def test_the_embedded_store_has_nothing_reclaimable(settings, tmp_path):
    store = LocalStore(settings.data_dir)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store.create_bookings([BookingIn(id="b1", user_id="u1", start_time=start, end_time=start + timedelta(hours=1))],
                          settings.camera_id)
    for status in (BookingStatus.completed, BookingStatus.video_processed, BookingStatus.video_uploaded):
        store.advance_booking_status("b1", status)
    src = tmp_path / "b1.mp4"
    src.write_bytes(b"\0" * 1000)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    assert store.reclaimable_files() == []  # its files ARE the storage: the only copy of every video
    guard = DiskGuard(settings.raw_dir, settings.processed_dir, 1, store, lambda: 0)
    assert not guard.ensure()
    assert store.local_object_path("videos", "u1/b1.mp4") is not None
    store.close()


def test_a_cloud_backed_recorder_makes_room_from_confirmed_mirrors_and_records(
        store, cloud_settings, fake_cloud, tmp_path, listen):
    """The field failure: every video kept in the mirror until the disk is full and the recorder stops."""
    files = _mirrors(store, tmp_path)
    settings = cloud_settings.model_copy(update={**FAST, "min_free_disk_mb": 1, "segment_seconds": 10.0})
    disk = SimulatedDisk(settings.data_dir, free_when_empty=MB + 4 * SIZE - 200_000)
    bus = MqttBus(settings, "recorder")
    recorder = build(settings, store, bus, disk_probe=disk)
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), name="test-recorder")
    finished = listen(f"ezrec/{settings.camera_id}/recording/finished")
    bus.start()
    assert bus.wait_connected(10)
    thread.start()
    try:
        start = whole_second(1.0)
        store.create_bookings([BookingIn(id="fits", user_id="u1", start_time=start,
                                         end_time=start + timedelta(seconds=1.2))], settings.camera_id)
        write_snapshot(settings.bookings_cache_path, settings.camera_id, store.list_bookings())
        finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "fits", timeout=20)
    finally:
        stop.set()
        thread.join(30)
        bus.stop()
    assert len(frame_times(settings.raw_dir / "fits.mp4")) == round(1.2 * settings.camera_fps)
    assert not files["old_up"].exists() and files["new_up"].exists()
    assert files["pending"].exists() and files["refused"].exists()


def test_status_counts_the_uploads_still_in_the_outbox(store, cloud_settings, tmp_path):
    """With Supabase the worker's file is gone once put_object queued it: the outbox is where uploads wait."""
    status = StatusService(cloud_settings, store, MqttBus(cloud_settings, "status"))
    assert status.collect().uploads_pending == 0
    _finished_video(store, tmp_path, "queued", 1)
    assert store.videos_waiting_for_upload() == 1
    assert status.collect().uploads_pending == 1, "queued in the outbox, not yet in the cloud"
    drain(store)
    assert status.collect().uploads_pending == 0
