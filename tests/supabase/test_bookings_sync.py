"""Bookings flow both ways: made in Supabase -> local mirror -> bookings cache file + retained MQTT
snapshot (the recorder's inputs); made on the device -> Supabase. Verified against the fake cloud
(tests/supabase/fakecloud.py) over the real PostgreSQL, with the real broker and SchedulePublisher."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest

from services.api.schedule import SchedulePublisher
from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus
from shared.schedule_cache import read_cache
from shared.store import LocalStore
from shared.store.cloud import CloudUnavailable
from shared.sync import CloudSync, start_cloud_sync
from shared.timeutil import utc_now
from tests.supabase.conftest import drain


@pytest.fixture
def publisher(cloud_settings, store):
    bus = MqttBus(cloud_settings, "api")
    bus.start()
    yield SchedulePublisher(cloud_settings, store, bus)
    bus.stop()


def _cached_ids(settings) -> list[str]:
    snapshot = read_cache(settings.bookings_cache_path)
    return [b.id for b in snapshot.bookings] if snapshot else []


def _insert(db, booking_id, camera, start, minutes=10, user="u1"):
    db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES (%s, %s, %s, %s, %s)",
               (booking_id, user, camera, start, start + timedelta(minutes=minutes)))


def test_cloud_bookings_reach_the_cache_file_and_the_retained_snapshot(
        cloud_settings, store, publisher, fake_cloud, db, listen):
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    _insert(db, "c1", camera, start)
    _insert(db, "c2", camera, start + timedelta(hours=1))
    _insert(db, "other", "another-camera", start)
    sync = CloudSync(store, camera, 60, lambda: publisher.publish(camera), lambda *a: None)
    snapshots = listen(f"ezrec/{camera}/bookings")
    assert sync.poll_once() is True
    assert _cached_ids(cloud_settings) == ["c1", "c2"]
    snapshots.wait_for(lambda t, p: [b["id"] for b in json.loads(p)["bookings"]] == ["c1", "c2"], timeout=10)
    assert sync.poll_once() is False  # nothing new: no republish

    db.execute("UPDATE bookings SET start_time = start_time + interval '30 minutes',"
               " end_time = end_time + interval '30 minutes' WHERE id = 'c1'")
    db.execute("DELETE FROM bookings WHERE id = 'c2'")
    db.execute("UPDATE bookings SET status = 'completed' WHERE id = 'c1'")  # ahead in the cloud
    assert sync.poll_once() is True
    assert _cached_ids(cloud_settings) == ["c1"]
    assert store.get_booking("c2") is None
    moved = store.get_booking("c1")
    assert moved.status == BookingStatus.completed
    snapshots.wait_for(lambda t, p: [b["id"] for b in json.loads(p)["bookings"]] == ["c1"], timeout=10)
    assert fake_cloud.requests()[-1]["method"] == "GET"  # pulling wrote nothing back


def test_moved_times_are_taken_while_confirmed(cloud_settings, store, fake_cloud, db):
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    _insert(db, "m1", camera, start)
    assert store.pull_bookings(camera)
    db.execute("UPDATE bookings SET end_time = end_time + interval '15 minutes' WHERE id = 'm1'")
    assert store.pull_bookings(camera)
    assert store.get_booking("m1").end_time == start + timedelta(minutes=25)


def test_offline_the_cached_schedule_stays_and_device_bookings_go_up_later(
        cloud_settings, store, publisher, fake_cloud, db):
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    _insert(db, "c1", camera, start)
    sync = CloudSync(store, camera, 60, lambda: publisher.publish(camera), lambda *a: None)
    sync.poll_once()
    fake_cloud.stop()
    with pytest.raises(CloudUnavailable):
        sync.poll_once()
    store.create_bookings([BookingIn(id="d1", user_id="u2", start_time=start + timedelta(hours=2),
                                     end_time=start + timedelta(hours=2, minutes=10))], camera)
    publisher.publish(camera)  # the API does this after its own changes
    assert _cached_ids(cloud_settings) == ["c1", "d1"]  # the recorder's source of truth, offline

    fake_cloud.start()
    assert sync.poll_once() is False  # d1 is queued for the cloud: the pull leaves it alone
    assert store.get_booking("d1") is not None
    drain(store)
    assert db.execute("SELECT id FROM bookings ORDER BY id").fetchall() == [("c1",), ("d1",)]
    assert sync.poll_once() is False and _cached_ids(cloud_settings) == ["c1", "d1"]


def test_a_device_booking_whose_upload_was_never_queued_is_pushed_not_deleted(cloud_settings, store, fake_cloud, db):
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    # written to the mirror, then a crash before the outbox entry: the pull must heal it, not delete it
    store.local.create_bookings([BookingIn(id="lost1", user_id="u1", start_time=start,
                                           end_time=start + timedelta(minutes=10))], camera)
    store.pull_bookings(camera)
    assert store.get_booking("lost1") is not None
    drain(store)
    assert db.execute("SELECT id, status FROM bookings").fetchall() == [("lost1", "confirmed")]


def test_the_sync_thread_polls_at_the_configured_interval(make_settings, fake_cloud, make_store, db):
    from tests.supabase.conftest import KEY

    settings = make_settings(supabase_url=fake_cloud.url, supabase_service_role_key=KEY,
                             bookings_poll_interval_s=0.3)
    store = make_store(settings)
    bus = MqttBus(settings, "api")
    bus.start()
    publisher = SchedulePublisher(settings, store, bus)
    assert start_cloud_sync(settings, LocalStore(settings.data_dir / "plain"), bus, lambda: None) is None
    assert start_cloud_sync(settings.model_copy(update={"bookings_sync": "off"}), store, bus, lambda: None) is None
    sync = start_cloud_sync(settings, store, bus, lambda: publisher.publish(settings.camera_id))
    try:
        _insert(db, "t1", settings.camera_id, utc_now() + timedelta(hours=1))
        deadline = time.monotonic() + 15
        while _cached_ids(settings) != ["t1"]:
            assert time.monotonic() < deadline, "the new cloud booking never reached the cache file"
            time.sleep(0.1)
    finally:
        sync.stop()
        bus.stop()


def test_a_missed_booking_and_its_reason_reach_the_cloud_and_a_late_recording_clears_it(store, db, cloud_settings):
    start = utc_now() - timedelta(hours=2)
    store.create_bookings([BookingIn(id="miss1", user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], cloud_settings.camera_id)
    store.advance_booking_status("miss1", BookingStatus.missed, reason="camera_fault: camera_open: no camera")
    drain(store)
    row = db.execute("SELECT status, status_reason FROM bookings WHERE id = 'miss1'").fetchone()
    assert row == ("missed", "camera_fault: camera_open: no camera")
    store.advance_booking_status("miss1", BookingStatus.completed)  # the recording turned up after the check
    drain(store)
    assert db.execute("SELECT status, status_reason FROM bookings WHERE id = 'miss1'").fetchone() == (
        "completed", None)


def test_a_booking_missed_in_the_cloud_arrives_with_its_reason(store, db, cloud_settings):
    start = utc_now() - timedelta(minutes=50)
    _insert(db, "miss2", cloud_settings.camera_id, start)
    store.pull_bookings(cloud_settings.camera_id)
    db.execute("UPDATE bookings SET status = 'missed', status_reason = 'no_recording: marked by another device'"
               " WHERE id = 'miss2'")
    store.pull_bookings(cloud_settings.camera_id)
    local = store.get_booking("miss2")
    assert (local.status, local.status_reason) == (BookingStatus.missed, "no_recording: marked by another device")


def test_a_result_cap_never_cuts_the_pull_short(cloud_settings, store, fake_cloud, db):
    """PostgREST caps a result at db-max-rows silently (200, Content-Range lower-upper/*; PostgREST Plan.hs
    treeRestrictRange): fewer rows than asked for says nothing about the end. Pages until an empty one."""
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    ids = [f"p{i:02d}" for i in range(12)]
    for i, booking_id in enumerate(ids):
        _insert(db, booking_id, camera, start + timedelta(minutes=15 * i))
    fake_cloud.configure(db_max_rows=5)
    assert store.pull_bookings(camera)
    assert [b.id for b in store.list_bookings(camera_id=camera)] == ids


def test_bookings_past_a_result_cap_are_not_taken_for_deleted(cloud_settings, store, fake_cloud, db):
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    ids = [f"q{i:02d}" for i in range(12)]
    for i, booking_id in enumerate(ids):
        _insert(db, booking_id, camera, start + timedelta(minutes=15 * i))
    assert store.pull_bookings(camera)  # no cap yet: all seen
    fake_cloud.configure(db_max_rows=5)  # the project's Max rows lowered
    db.execute("DELETE FROM bookings WHERE id = 'q07'")  # really deleted in the cloud
    assert store.pull_bookings(camera)
    assert [b.id for b in store.list_bookings(camera_id=camera)] == [b for b in ids if b != "q07"]
    reads = [dict(parse_qsl(e["query"])) for e in fake_cloud.requests() if e["path"] == "/rest/v1/bookings"]
    *pages, lookup = reads[-5:]
    assert [p.get("offset") for p in pages] == ["0", "5", "10", "11"]  # pages until an empty one
    assert pages[-1]["order"] == "start_time.asc,id.asc"  # a total order, so pages neither skip nor repeat
    assert lookup["id"] == "in.(q07)", "asked for by id before it is removed here"


def test_a_booking_missing_from_the_pages_but_in_the_cloud_is_kept(cloud_settings, store, fake_cloud, db,
                                                                    monkeypatch):
    """A row can move between two pages (its start changed meanwhile): only a lookup by id decides it is gone."""
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(hours=1)
    for i in range(3):
        _insert(db, f"m{i}", camera, start + timedelta(minutes=15 * i))
    assert store.pull_bookings(camera)
    real = store.cloud.fetch_bookings
    monkeypatch.setattr(store.cloud, "fetch_bookings", lambda *a: [r for r in real(*a) if r["id"] != "m1"])
    store.pull_bookings(camera)
    assert [b.id for b in store.list_bookings(camera_id=camera)] == ["m0", "m1", "m2"]


def test_a_change_pushed_while_a_pull_was_in_flight_is_not_undone_by_it(cloud_settings, store, fake_cloud):
    """Found by the soak (seed 1): a booking shortened through the API while the poller's fetch was in flight was
    pushed to the cloud and its outbox op deleted before the fetch returned; the pull then took the fetched, stale
    row (the old end) over the local change, and the recorder recorded to the old end."""
    camera = cloud_settings.camera_id
    start = utc_now() + timedelta(minutes=5)
    store.create_bookings([BookingIn(id="race1", user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], camera)
    drain(store)
    store.pull_bookings(camera)
    new_end = start + timedelta(minutes=10)
    fetch = store.cloud.fetch_bookings

    def fetch_while_the_api_changes_it(*args, **kwargs):
        rows = fetch(*args, **kwargs)  # the cloud's answer, made before the change: the old end
        store.update_booking_times("race1", start, new_end)  # the API's PUT meanwhile ...
        drain(store)  # ... pushed to the cloud, its op done, before the pull goes on
        return rows

    store.cloud.fetch_bookings = fetch_while_the_api_changes_it
    store.pull_bookings(camera)
    assert store.get_booking("race1").end_time == new_end, "the stale fetch undid the change"
    store.cloud.fetch_bookings = fetch
    assert store.pull_bookings(camera) is False and store.get_booking("race1").end_time == new_end
