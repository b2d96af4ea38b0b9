"""Soak, short enough for `make test`: one video per fault class, in turn, through the store's background drainer,
against the fake cloud injecting the fault as the real servers would answer it, with the real status service
judging alerts on the real broker. After every step and at every moment in between:

- none lost: a video not (yet) in the fake bucket still has its mirror copy, byte for byte, which the disk guard may
  not free, and its upload is still in the outbox (pending, or refused);
- none held without an alert: every refused write has a raised `cloud_refused` alert naming it, every fault the
  drainer retries through a raised `cloud_fault` alert.

Where the fault needs an operator (a limit to raise, a misconfiguration to fix, a write to replay), the test acts as
one, after the alert. At the end every video is in the bucket, every booking `video_uploaded` with its row, the
outbox empty, and every alert raised on the way has been cleared."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.status.service import StatusService
from shared.models import BookingIn, BookingStatus, Video, storage_path_for_video, video_id_for
from shared.store.cloud.tus import CHUNK_SIZE
from tests.supabase.fakecloud import postgrest_fault, storage_fault, tus_fault

SMALL, BIG = 64 * 1024, CHUNK_SIZE + 1000  # a standard upload; a resumable one (two PATCHes)
START = datetime(2031, 3, 1, 8, 0, tzinfo=UTC)


class Soak:
    def __init__(self, store, status: StatusService, fake_cloud, db, tmp_path) -> None:
        self.store, self.status, self.cloud, self.db, self.tmp = store, status, fake_cloud, db, tmp_path
        self.videos: dict[str, bytes] = {}
        self.raised_ever: set[str] = set()

    # ---- one video, as the worker leaves it: object, row, `video_uploaded`, in that order ------------------

    def video(self, booking_id: str, size: int) -> None:
        store = self.store
        start = START + timedelta(hours=len(self.videos))
        store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                         end_time=start + timedelta(minutes=30))], store.settings.camera_id)
        store.advance_booking_status(booking_id, BookingStatus.completed)
        store.advance_booking_status(booking_id, BookingStatus.video_processed)
        src = self.tmp / f"{booking_id}.mp4"
        data = os.urandom(size)
        src.write_bytes(data)
        path = storage_path_for_video("u1", booking_id)
        store.put_object("videos", path, src, "video/mp4")
        store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1",
                                 camera_id=store.settings.camera_id, storage_path=path, size_bytes=size,
                                 duration_seconds=1.0, uploaded_at=START))
        store.advance_booking_status(booking_id, BookingStatus.video_uploaded)
        src.unlink()  # the worker's clean-up: the mirror is now the only copy on the device
        self.videos[booking_id] = data

    # ---- what is true at every moment -------------------------------------------------------------------

    def in_bucket(self, booking_id: str) -> bool:
        file = self.cloud.object_file("videos", f"u1/{booking_id}.mp4")
        return file.exists() and file.read_bytes() == self.videos[booking_id]

    def delivered(self, booking_id: str) -> bool:
        row = self.db.execute("SELECT b.status, v.size_bytes FROM bookings b LEFT JOIN videos v ON v.booking_id = b.id"
                              " WHERE b.id = %s", (booking_id,)).fetchone()
        return (self.in_bucket(booking_id) and row == ("video_uploaded", len(self.videos[booking_id]))
                and not self.store.outbox.has_pending(booking_id))

    def refused(self, booking_id: str) -> int | None:
        return next((op_id for op_id, key, _, _ in self.store.outbox.rejected() if key == booking_id), None)

    def check(self) -> list[str]:
        """The invariants; returns the alerts active now."""
        store = self.store
        blocked = store.outbox.blocked()  # first: the refusal holding each is still there when read below
        refused = [(op_id, key) for op_id, key, _, _ in store.outbox.rejected()]  # only this thread replays
        faults = {f.name: f.since for f in store.outbox.faults()}  # the drainer notes and clears them meanwhile
        reclaimable = set(store.reclaimable_files())
        kept = {op.payload["path"] for op in store.outbox.kept(("object_put",))}
        for booking_id, data in self.videos.items():
            if self.in_bucket(booking_id):
                continue
            mirror = store.local_object_path("videos", f"u1/{booking_id}.mp4")
            assert mirror is not None and mirror.read_bytes() == data, f"{booking_id}: the only copy is gone"
            assert mirror not in reclaimable, f"{booking_id}: the disk guard could free the only copy"
            assert f"u1/{booking_id}.mp4" in kept, f"{booking_id}: not in the cloud and no upload queued"
        active = set(self.status.judge(self.status.collect()).alerts_active)
        self.raised_ever |= active
        for op_id, key in refused:
            assert f"cloud_refused:{op_id}" in active, f"{key}: refused (op {op_id}) without an alert"
        for fault in store.outbox.faults():
            if faults.get(fault.name) == fault.since:  # there all along the judging (a fault noted again: new since)
                assert f"cloud_fault:{fault.name}" in active, f"fault {fault.name} without an alert"
        for op in blocked:
            assert any(key == op.key for _, key in refused), f"{op.key}: held without a refused write"
        return sorted(active)

    def until(self, condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        """Judged after the condition: when it returns, the alerts reflect a state at least as new as it saw."""
        deadline = time.monotonic() + timeout
        while True:
            met = condition()
            self.check()
            if met:
                return
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def replay(self, booking_id: str) -> None:
        op_id = self.refused(booking_id)
        assert op_id is not None and self.store.outbox.replay(op_id)
        self.store.drainer.wake.set()

    def alert(self, prefix: str) -> Callable[[], bool]:
        return lambda: any(a.startswith(prefix) for a in self.check())


@pytest.fixture
def soak(store, status, fake_cloud, db, tmp_path):
    store.start()  # the background drainer, as in the worker and the API
    return Soak(store, status, fake_cloud, db, tmp_path)


def test_each_fault_class_in_turn_ends_with_every_video_in_the_bucket(soak, fake_cloud, cloud_settings, listen):
    alerts = listen(f"ezrec/{cloud_settings.camera_id}/alerts")
    started = time.monotonic()

    def transient(booking_id: str, size: int, *rules: dict) -> None:
        """A fault that passes by itself: retried, delivered, nothing refused."""
        fake_cloud.inject(*rules)
        soak.video(booking_id, size)
        soak.until(lambda: soak.delivered(booking_id), f"{booking_id} delivered")
        assert soak.refused(booking_id) is None
        assert all(r["hits"] for r in fake_cloud.faults()), "every injected fault was met"
        fake_cloud.clear_faults()

    def fault_until_fixed(booking_id: str, size: int, alert: str, fix: Callable[[], None]) -> None:
        """A fault every write meets: retried (never refused) and reported until the operator fixes it."""
        soak.video(booking_id, size)
        soak.until(soak.alert(alert), f"alert {alert}")
        assert soak.refused(booking_id) is None and not soak.in_bucket(booking_id)
        fix()
        soak.until(lambda: soak.delivered(booking_id), f"{booking_id} delivered")
        soak.until(lambda: not soak.alert(alert)(), f"alert {alert} cleared")

    def refused_until_replayed(booking_id: str, size: int, alert_says: str, fix: Callable[[], None]) -> None:
        """A write the cloud refuses: held with an alert saying why until the operator fixes it and replays it."""
        soak.video(booking_id, size)
        soak.until(lambda: soak.refused(booking_id) is not None, f"{booking_id} refused")
        op_id = soak.refused(booking_id)
        _, payload = alerts.wait_for(lambda t, p: json.loads(p)["id"] == f"cloud_refused:{op_id}")
        assert alert_says in json.loads(payload)["message"], payload
        fix()
        soak.replay(booking_id)
        soak.until(lambda: soak.delivered(booking_id), f"{booking_id} delivered after replay")

    # Storage: temporary faults in an HTTP 400 body, a database timeout, a lock on the resumable endpoint
    transient("s-readonly", SMALL, storage_fault(503, "DatabaseReadOnly", "read-only", method="POST",
                                                 path="^/storage/v1/object/videos/", count=2))
    transient("s-timeout", SMALL, storage_fault(544, "DatabaseTimeout", "The connection to the database timed out",
                                                method="POST", path="^/storage/v1/object/videos/"))
    transient("t-locked", BIG, storage_fault(423, "ResourceLocked", "The resource is locked", method="POST",
                                             path="^/storage/v1/upload/resumable$"),
              tus_fault(423, "The resource is locked", method="PATCH", path="resumable/", skip=1))
    # TUS: finishing the upload fails after the last byte; the upload URL expires mid-upload
    transient("t-completion", BIG, tus_fault(500, "database error, code: 40001", method="PATCH", path="resumable/",
                                             phase="completion"))
    transient("t-expired", BIG, {"method": "PATCH", "path": "resumable/", "skip": 1, "expire": True})
    # PostgREST: a connection failure, a serialization failure
    transient("r-503", SMALL, postgrest_fault("08006", "connection failure", method="PATCH",
                                              path="^/rest/v1/bookings", count=2),
              postgrest_fault("40001", "could not serialize access", method="POST", path="^/rest/v1/videos"))
    # the cloud goes away altogether
    fake_cloud.stop()
    soak.video("offline", BIG)
    soak.until(lambda: soak.store.outbox.pending_count() > 0 and soak.store.drainer.failures > 0, "a failed retry")
    fake_cloud.start()
    soak.until(lambda: soak.delivered("offline"), "offline delivered")

    # configuration faults: retried and reported until fixed
    fake_cloud.inject(storage_fault(403, "AccessDenied", "invalid signature", "Unauthorized",
                                    path="^/storage/v1/", count=None))
    fault_until_fixed("k-storage", SMALL, "cloud_fault:storage:auth", fake_cloud.clear_faults)
    fake_cloud.inject({"path": "^/rest/v1/", "status": 401, "body": {"message": "Invalid authentication credentials"},
                       "count": None})
    fault_until_fixed("k-rest", BIG, "cloud_fault:rest:auth", fake_cloud.clear_faults)
    fake_cloud.configure(read_only=True)  # Supabase's answer to a database over its disk size
    fault_until_fixed("read-only", BIG, "cloud_fault:rest:read_only", lambda: fake_cloud.configure(read_only=False))

    # refusals: held with an alert saying why, delivered once fixed and replayed
    fake_cloud.configure(file_size_limit=CHUNK_SIZE)
    refused_until_replayed("too-big", BIG, f"{CHUNK_SIZE} bytes", lambda: fake_cloud.configure(
        file_size_limit=50 * 1024 * 1024))
    fake_cloud.configure(tus_location_prefix="")
    refused_until_replayed("location", BIG, "REQUEST_ALLOW_X_FORWARDED_PATH=true", lambda: fake_cloud.configure(
        tus_location_prefix="/storage/v1"))
    fake_cloud.inject(postgrest_fault("23505", 'duplicate key value violates unique constraint "videos_pkey"',
                                      method="POST", path="^/rest/v1/videos"))
    refused_until_replayed("conflict", SMALL, "23505", fake_cloud.clear_faults)

    # the end: everything delivered, nothing held, nothing waiting, every alert cleared
    soak.until(lambda: soak.check() == [] and soak.store.outbox.pending_count() == 0, "all quiet")
    assert all(soak.delivered(b) for b in soak.videos), [b for b in soak.videos if not soak.delivered(b)]
    assert soak.store.outbox.rejected() == [] and soak.store.outbox.faults() == []
    assert set(soak.store.reclaimable_files()) == {soak.store.local_object_path("videos", f"u1/{b}.mp4")
                                                   for b in soak.videos}, "every mirror copy may go now"
    for alert_id in soak.raised_ever:
        alerts.wait_for(lambda t, p, a=alert_id: json.loads(p)["id"] == a and json.loads(p)["state"] == "cleared")
    assert {a.split(":")[0] for a in soak.raised_ever} == {"cloud_fault", "cloud_refused"}
    assert time.monotonic() - started < 60, "a soak for `make test` must stay well under a minute"
