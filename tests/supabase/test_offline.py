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
from shared.models import BookingIn, BookingStatus, Video, storage_path_for_video, video_id_for
from shared.store.cloud.drain import Drainer
from shared.store.cloud.outbox import CloudOutbox
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
    for booking_id in ids:
        steps = _cloud_steps(fake_cloud, booking_id)
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
    assert (key, kind) == ("bad1", "video_upsert") and "PostgREST answered 400 22P02" in error
    assert _cloud_status(db, "good1") == "confirmed"


def _upload_finished_video(store, tmp_path, booking_id: str, size: int) -> None:
    """What the worker does once a video is made: the object, then its row, then `video_uploaded`."""
    for status in (BookingStatus.completed, BookingStatus.video_processed):
        store.advance_booking_status(booking_id, status)
    src = tmp_path / f"{booking_id}.mp4"
    src.write_bytes(b"\0" * size)
    path = storage_path_for_video("u1", booking_id)
    store.put_object("videos", path, src, "video/mp4")
    store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1",
                             camera_id=store.settings.camera_id, storage_path=path, size_bytes=size,
                             duration_seconds=1.0, uploaded_at=utc_now()))
    store.advance_booking_status(booking_id, BookingStatus.video_uploaded)


def _cloud_steps(fake_cloud, booking_id: str) -> list[str]:
    """What the cloud accepted for one booking's video, in the order it accepted it."""
    steps = []
    for entry in fake_cloud.log():
        if entry.get("event") == "object_stored" and entry["path"] == f"u1/{booking_id}.mp4":
            steps.append("object")
        elif entry.get("path") == "/rest/v1/videos" and entry.get("body", {}).get("booking_id") == booking_id:
            steps.append(f"row:{entry['status']}")
        elif entry.get("method") == "PATCH" and f"id=eq.{booking_id}&" in entry.get("query", "") + "&":
            steps.append(entry["body"]["status"])
    return steps


def test_a_refused_upload_holds_back_its_bookings_later_writes_across_a_restart_until_replayed(
        make_store, cloud_settings, fake_cloud, db, tmp_path):
    """A refused video must not let its row and `video_uploaded` reach the cloud without the file (the cloud
    would then promise a video it does not have); other bookings go on, and an operator's replay lets the
    held writes follow in their order, each exactly once."""
    store = make_store()
    start = utc_now() + timedelta(hours=4)
    for i, booking_id in enumerate(("refused1", "fine1")):
        store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start + timedelta(hours=i),
                                         end_time=start + timedelta(hours=i, minutes=10))], cloud_settings.camera_id)
    drain(store)
    limit = db.execute("SELECT file_size_limit FROM storage.buckets WHERE id = 'videos'").fetchone()[0]
    db.execute("UPDATE storage.buckets SET file_size_limit = 1024 WHERE id = 'videos'")  # session-wide: restored
    try:
        _upload_finished_video(store, tmp_path, "refused1", 4096)  # over the bucket's limit: a 4xx
        _upload_finished_video(store, tmp_path, "fine1", 512)
        store.sync_now()

        [(op_id, key, kind, error)] = store.outbox.rejected()
        assert (key, kind) == ("refused1", "object_put") and "maximum allowed size" in error
        assert _cloud_steps(fake_cloud, "refused1") == ["completed", "video_processed"]
        assert _cloud_steps(fake_cloud, "fine1") == ["completed", "video_processed", "object", "row:201",
                                                     "video_uploaded"]
        assert _cloud_status(db, "refused1") == "video_processed"
        assert db.execute("SELECT booking_id FROM videos").fetchall() == [("fine1",)]
        assert [(op.key, op.kind) for op in store.outbox.blocked()] == [
            ("refused1", "video_upsert"), ("refused1", "booking_status")]  # kept, in order, as evidence

        store.close()  # the hold lives in the outbox file, not in the process that saw the refusal
        store = make_store()
        assert store.sync_now() == 0 and store.outbox.pending_count() == 2
        assert _cloud_steps(fake_cloud, "refused1") == ["completed", "video_processed"]
    finally:
        db.execute("UPDATE storage.buckets SET file_size_limit = %s WHERE id = 'videos'", (limit,))

    assert store.outbox.replay(op_id)  # the operator lifted the cause and replays the refused write
    drain(store)
    assert store.outbox.rejected() == [] and store.outbox.blocked() == []
    assert _cloud_steps(fake_cloud, "refused1") == ["completed", "video_processed", "object", "row:201",
                                                    "video_uploaded"]
    assert _cloud_steps(fake_cloud, "fine1") == ["completed", "video_processed", "object", "row:201",
                                                 "video_uploaded"]
    assert _cloud_status(db, "refused1") == "video_uploaded"
    assert fake_cloud.object_file("videos", "u1/refused1.mp4").stat().st_size == 4096


def test_writes_held_behind_a_refusal_never_crowd_other_keys_out_of_a_pass(tmp_path):
    """A key can stay held for days (say a booking's writes behind a refused upload) while its writes pile up:
    the drainer's batch must still reach the other keys, and replaying a write that was not refused must
    change nothing. Status rows are not held: each supersedes the last."""
    outbox = CloudOutbox(tmp_path / "cloud-outbox.sqlite3")
    try:
        refused = outbox.add("object_put", "b0", {})
        outbox.reject(refused, "HTTP 413: too large")
        held = [outbox.add("booking_status", "b0", {}) for _ in range(5)]
        other = outbox.add("booking_status", "b1", {})
        assert [op.id for op in outbox.runnable(limit=1)] == [other] and outbox.has_runnable()
        assert [op.id for op in outbox.blocked()] == held and outbox.pending_count() == 6
        assert not outbox.replay(other)
        assert outbox.replay(refused) and [op.id for op in outbox.runnable()] == [refused, *held, other]

        bad_status = outbox.add("system_status", "status:cam1", {})
        outbox.reject(bad_status, "HTTP 400: refused")
        later_status = outbox.add("system_status", "status:cam1", {})
        assert later_status in [op.id for op in outbox.runnable()] and later_status not in \
            [op.id for op in outbox.blocked()], "a refused status row must not freeze the device's status"
    finally:
        outbox.close()


def test_the_drainer_backs_off_exponentially_with_jitter_up_to_the_cap(tmp_path):
    """Offline for hours must not mean a request a second: 1, 2, 4 ... s (each 80-100 % of that), capped."""
    outbox = CloudOutbox(tmp_path / "cloud-outbox.sqlite3")
    try:
        drainer = Drainer(outbox, lambda op: None, retry_min_s=1.0, retry_max_s=30.0)
        assert drainer.backoff_s() == 0.0 and drainer.cloud_reachable
        delays = []
        for _ in range(9):
            drainer.note_unavailable()
            delays.append(drainer.backoff_s())
        for n, delay in enumerate(delays):
            nominal = min(30.0, 2.0 ** n)
            assert 0.8 * nominal <= delay <= nominal, (n, delay)
        assert delays[-1] >= 0.8 * 30 and not drainer.cloud_reachable
        assert len({round(d, 6) for d in delays[-4:]}) > 1, "jitter: devices that lost the cloud together spread out"
        drainer.note_reachable()
        assert drainer.backoff_s() == 0.0 and drainer.cloud_reachable
    finally:
        outbox.close()
