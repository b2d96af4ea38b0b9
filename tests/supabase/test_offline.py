"""Offline first: the cloud goes away in the middle of a run and nothing is lost, duplicated or reordered.

The end-to-end test drives the store as the services drive it: bookings made in the cloud are pulled by
CloudSync (the API's component), the recorder's part is simulated (status `completed` + a real raw MP4
in RAW_RECORDINGS_DIR), and the REAL video worker (services/video_worker, in-process, real PyAV, real
MQTT broker) processes, uploads and cleans up. The cloud is tests/supabase/fakecloud.py over the real
PostgreSQL with the migrations; it is stopped for bookings 2 and 3 and brought back afterwards.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from services.video_worker.service import build
from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus
from shared.sync import CloudSync
from shared.timeutil import utc_now
from tests.media import make_recording
from tests.supabase.conftest import drain


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _cloud_status(db, booking_id):
    row = db.execute("SELECT status FROM bookings WHERE id = %s", (booking_id,)).fetchone()
    return row[0] if row else None


def test_three_bookings_with_the_cloud_away_in_the_middle(cloud_settings, make_store, fake_cloud, db):
    settings, camera = cloud_settings, cloud_settings.camera_id
    ids = [f"{camera}-b{i}" for i in range(3)]
    start = utc_now() - timedelta(minutes=30)
    for i, booking_id in enumerate(ids):  # made in the cloud, as the booking app does (service role)
        db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES (%s, 'u1', %s, %s, %s)",
                   (booking_id, camera, start + timedelta(minutes=5 * i), start + timedelta(minutes=5 * i + 2)))
    store = make_store()
    store.start()
    published = []
    sync = CloudSync(store, camera, 1.0, lambda: published.append(1), lambda *a: None)
    assert sync.poll_once() is True and published == [1]
    assert [b.id for b in store.list_bookings(camera_id=camera)] == ids

    bus = MqttBus(settings, "worker")
    worker = build(settings, store, bus)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    bus.start()
    thread.start()

    def recorded(booking_id: str) -> None:
        store.advance_booking_status(booking_id, BookingStatus.completed)
        make_recording(settings.raw_dir / f"{booking_id}.mp4", 1.5, size=(320, 240), fps=15)

    def handled_locally(booking_id: str) -> bool:
        return (store.get_booking(booking_id).status == BookingStatus.video_uploaded
                and not (settings.raw_dir / f"{booking_id}.mp4").exists()
                and not (settings.processed_dir / f"{booking_id}.mp4").exists())

    try:
        recorded(ids[0])
        _wait(lambda: _cloud_status(db, ids[0]) == "video_uploaded", 60, "booking 1 in the cloud")

        fake_cloud.stop()  # the court's internet goes down
        recorded(ids[1])
        recorded(ids[2])
        _wait(lambda: handled_locally(ids[1]) and handled_locally(ids[2]), 90, "bookings 2 and 3 processed offline")
        assert [_cloud_status(db, b) for b in ids[1:]] == ["confirmed", "confirmed"]
        assert db.execute("SELECT count(*) FROM videos").fetchone() == (1,)
        assert store.outbox.pending_count() >= 2 * 5  # per booking: 3 statuses, the object, the row
        with_copies = [store.local_object_path("videos", f"u1/{b}.mp4") for b in ids[1:]]
        assert all(p is not None and p.stat().st_size > 0 for p in with_copies)  # the store's own copy stays
    finally:
        stop.set()
        thread.join(30)
        bus.stop()
    store.close()  # and the services restart while offline

    fake_cloud.start()  # internet back
    restarted = make_store()
    restarted.start()
    _wait(lambda: restarted.outbox.pending_count() == 0, 60, "the outbox to drain")
    assert restarted.outbox.rejected() == []

    # every row and object exactly once ...
    assert [_cloud_status(db, b) for b in ids] == ["video_uploaded"] * 3
    videos = db.execute("SELECT booking_id, storage_path, size_bytes FROM videos ORDER BY booking_id").fetchall()
    assert [(b, p) for b, p, _ in videos] == [(b, f"u1/{b}.mp4") for b in ids]
    stored = fake_cloud.events("object_stored")
    assert [e["path"] for e in stored] == [f"u1/{b}.mp4" for b in ids]
    for (_booking_id, path, size), event in zip(videos, stored, strict=True):
        assert event["size"] == size and event["content_type"] == "video/mp4"
        assert fake_cloud.object_file("videos", path).read_bytes() == \
            restarted.local_object_path("videos", path).read_bytes()
    assert db.execute("SELECT count(*) FROM storage.objects WHERE bucket_id = 'videos'").fetchone() == (3,)

    # ... and in order per booking: statuses forward only, the object and the row before `video_uploaded`
    log = fake_cloud.log()
    for booking_id in ids:
        steps = []
        for entry in log:
            if entry.get("event") == "object_stored" and entry["path"] == f"u1/{booking_id}.mp4":
                steps.append("object")
            elif entry.get("path") == "/rest/v1/videos" and entry.get("body", {}).get("booking_id") == booking_id:
                steps.append(f"row:{entry['status']}")
            elif entry.get("method") == "PATCH" and f"id=eq.{booking_id}&" in entry.get("query", "") + "&":
                steps.append(entry["body"]["status"])
        assert steps == ["completed", "video_processed", "object", "row:201", "video_uploaded"], (booking_id, steps)


def test_a_late_status_never_undoes_a_newer_one_in_the_cloud(store, cloud_settings, fake_cloud, db):
    start = utc_now() + timedelta(hours=1)
    store.create_bookings([BookingIn(id="late1", user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=10))], cloud_settings.camera_id)
    for status in (BookingStatus.completed, BookingStatus.video_processed, BookingStatus.video_uploaded):
        store.advance_booking_status("late1", status)
    drain(store)
    store.outbox.add("booking_status", "late1", {"id": "late1", "status": "completed"})  # a lagging process
    drain(store)
    assert _cloud_status(db, "late1") == "video_uploaded"
    db.execute("UPDATE bookings SET status = 'completed' WHERE id = 'late1'")  # even bypassing the client
    assert _cloud_status(db, "late1") == "video_uploaded"


def test_only_one_process_drains_at_a_time(make_store, cloud_settings, fake_cloud):
    first, second = make_store(), make_store()  # two services, one DATA_DIR
    start = utc_now() + timedelta(hours=2)
    first.create_bookings([BookingIn(id="lease1", user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=10))], cloud_settings.camera_id)
    assert first.outbox.acquire_lease(first.drainer.holder, 60)
    assert second.sync_now() == 0 and second.outbox.pending_count() == 1  # the live holder keeps it
    assert first.sync_now() == 1
    first.outbox.release_lease(first.drainer.holder)
    second.create_bookings([BookingIn(id="lease2", user_id="u1", start_time=start + timedelta(hours=1),
                                      end_time=start + timedelta(hours=1, minutes=10))], cloud_settings.camera_id)
    assert second.sync_now() == 1


def test_a_refused_write_is_kept_as_evidence_and_does_not_block_the_rest(store, cloud_settings, fake_cloud, db):
    start = utc_now() + timedelta(hours=3)
    store.outbox.add("video_upsert", "bad1", {"row": {"id": "not-a-uuid", "booking_id": "bad1"}})
    store.create_bookings([BookingIn(id="good1", user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=10))], cloud_settings.camera_id)
    drain(store)
    [(op_id, key, kind, error)] = store.outbox.rejected()
    assert (key, kind) == ("bad1", "video_upsert") and "HTTP 400" in error
    assert _cloud_status(db, "good1") == "confirmed"
