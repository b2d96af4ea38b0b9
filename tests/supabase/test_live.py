"""Opt-in: the store and its assumptions about how Supabase answers, against a REAL Supabase, when SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY are set in the environment: a local stack (`supabase start`) or a hosted project, with
supabase/migrations applied (how: supabase/README.md, "Running the live tests"). Every row and object is written
under a unique test id and removed afterwards.

Each test checks on the real servers a behaviour tests/supabase/fakecloud.py copies from their source, so a
server that changed shows here first: Storage's errors in HTTP 400 bodies, the resumable endpoint's Location,
Upload-Expires, HEAD after completion and refusals at creation, PostgREST's 409 and paging, a wrong key."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.models import BookingIn, BookingStatus, Video, video_id_for
from shared.store.base import NotFound
from shared.store.cloud.errors import CloudRejected, CloudUnavailable, classify_storage_answer
from shared.store.cloud.tus import CHUNK_SIZE, TusState, upload_version
from shared.timeutil import utc_now
from tests.supabase.conftest import drain

URL, KEY = os.environ.get("SUPABASE_URL"), os.environ.get("SUPABASE_SERVICE_ROLE_KEY")

pytestmark = pytest.mark.skipif(
    not (URL and KEY), reason="live Supabase test skipped: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are not both set "
    "in the environment (set them to run against a local stack or a project with supabase/migrations applied; "
    "see supabase/README.md)")


@pytest.fixture
def tag() -> str:
    return f"ezrec-live-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cloud(tag: str) -> Iterator:
    """A CloudClient of its own (no outbox), and the clean-up of everything written under `tag`."""
    from shared.store.cloud.client import CloudClient

    assert URL and KEY
    client = CloudClient(URL, KEY, timeout_s=120, tus_state=TusState(
        sqlite3.connect(":memory:", check_same_thread=False), threading.Lock()))
    yield client
    client.supabase.table("videos").delete().eq("user_id", tag).execute()
    client.supabase.table("bookings").delete().eq("user_id", tag).execute()
    for bucket in ("videos", "media"):
        names = [f"{tag}/{item['name']}" for item in client.supabase.storage.from_(bucket).list(tag)]
        if names:
            client.supabase.storage.from_(bucket).remove(names)
    client.close()


def _booking_row(tag: str, booking_id: str, hours: int) -> dict:
    start = utc_now() + timedelta(days=30, hours=hours)
    return {"id": booking_id, "user_id": tag, "camera_id": tag, "start_time": start.isoformat(),
            "end_time": (start + timedelta(minutes=30)).isoformat(), "status": "confirmed"}


def test_round_trip_through_the_store(make_settings, tmp_path, tag, cloud):
    from shared.store.cloud import SupabaseStore

    settings = make_settings(supabase_url=URL, supabase_service_role_key=KEY)
    store = SupabaseStore(settings)
    path = f"{tag}/{tag}.mp4"
    try:
        start = utc_now() + timedelta(days=30)
        store.create_bookings([BookingIn(id=tag, user_id=tag, start_time=start,
                                         end_time=start + timedelta(minutes=5))], settings.camera_id)
        src = tmp_path / "v.mp4"
        src.write_bytes(os.urandom(CHUNK_SIZE + 1024 * 1024))  # over 6 MB: the resumable endpoint
        store.put_object("videos", path, src, "video/mp4")
        store.upsert_video(Video(id=video_id_for(tag), booking_id=tag, user_id=tag, camera_id=settings.camera_id,
                                 storage_path=path, size_bytes=src.stat().st_size, duration_seconds=1.0,
                                 uploaded_at=utc_now()))
        store.advance_booking_status(tag, BookingStatus.video_uploaded)
        drain(store, timeout=300)
        assert store.outbox.rejected() == [] and store.outbox.faults() == []
        fresh = SupabaseStore(settings.model_copy(update={"data_dir": tmp_path / "other"}))
        try:
            assert fresh.object_exists("videos", path)
            assert fresh.get_object("videos", path, tmp_path / "back.mp4").read_bytes() == src.read_bytes()
            assert fresh.cloud.fetch_booking_statuses([tag]) == {tag: "video_uploaded"}
        finally:
            fresh.close()
    finally:
        store.close()


def test_resumable_uploads_answer_as_the_client_expects(tag, cloud):
    """Location under /storage/v1 carrying the object's version, Upload-Expires, HEAD = size after the last byte."""
    tus, path, size = cloud.tus, f"{tag}/tus.mp4", CHUNK_SIZE + 1000
    url, expires_at = tus._create("videos", path, size, "video/mp4", "3600")
    assert url.startswith(f"{URL.rstrip('/')}/storage/v1/upload/resumable/"), url
    assert expires_at is not None and utc_now().timestamp() < expires_at <= utc_now().timestamp() + 24 * 3600 + 60
    version = upload_version(url, "videos", path)
    assert version, f"the upload URL {url} does not carry bucket/name/version"
    data = os.urandom(size)
    for offset in (0, CHUNK_SIZE):
        response = cloud.http.patch(url, content=data[offset:offset + CHUNK_SIZE], headers={
            **tus.headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        assert response.status_code == 204, response.text
    assert response.headers.get("Tus-Complete") == "1"
    head = cloud.http.head(url, headers=tus.headers)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, str(size))
    info = cloud.object_info("videos", path)
    assert info is not None and (info["size"], info["version"]) == (size, version)


def test_refusals_come_at_creation_in_plain_text(tag, cloud, tmp_path):
    tus = cloud.tus
    limit = cloud._project_limit()
    assert limit, "OPTIONS on the resumable endpoint should say Tus-Max-Size (the project's upload limit)"
    too_big = cloud.http.post(tus.endpoint, headers={**tus.headers, "Upload-Length": str(limit + 1),
                                                     "Upload-Metadata": _metadata("videos", f"{tag}/big.mp4")})
    assert too_big.status_code == 413, too_big.text
    error = classify_storage_answer(too_big.status_code, too_big.content, "create")
    assert isinstance(error, CloudRejected) and error.reason == "too_large"
    wrong = cloud.http.post(tus.endpoint, headers={**tus.headers, "Upload-Length": "10", "Upload-Metadata":
                                                   _metadata("videos", f"{tag}/t.mp4", "text/plain")})
    assert wrong.status_code == 415, wrong.text
    small = tmp_path / "t.mp4"
    small.write_bytes(b"not a video")
    with pytest.raises(CloudRejected, match="the videos bucket takes video/mp4"):
        cloud.upload("videos", f"{tag}/t.mp4", small, "text/plain", resume_key="live")


def test_storage_errors_carry_the_real_code_in_their_body(tag, cloud, tmp_path):
    missing = cloud.http.get(f"{cloud.url}/storage/v1/object/info/videos/{tag}/none.mp4", headers=cloud._auth)
    assert missing.status_code in (400, 404) and str(missing.json().get("statusCode")) == "404", missing.text
    assert cloud.object_info("videos", f"{tag}/none.mp4") is None
    with pytest.raises(NotFound):
        cloud.download("videos", f"{tag}/none.mp4", tmp_path / "none.mp4")


def test_postgrest_conflicts_and_pages(tag, cloud):
    rows = [_booking_row(tag, f"{tag}-{i}", i) for i in range(3)]
    for row in rows:
        cloud.insert_booking(row)
    cloud.insert_booking(rows[0])  # ignore-duplicates: a retried insert is a no-op
    with pytest.raises(CloudRejected) as refused:
        cloud._call("plain insert", lambda: cloud.supabase.table("bookings").insert(rows[0]).execute())
    assert refused.value.reason == "conflict" and "409 23505" in str(refused.value)
    pulled = cloud.fetch_bookings(tag, utc_now(), page_size=2)
    assert [r["id"] for r in pulled] == [r["id"] for r in rows]


def test_a_wrong_key_is_a_configuration_fault(tag):
    from shared.store.cloud.client import CloudClient

    assert URL
    wrong = CloudClient(URL, "not-the-service-role-key", timeout_s=60, tus_state=TusState(
        sqlite3.connect(":memory:", check_same_thread=False), threading.Lock()))
    try:
        for call in (lambda: wrong.fetch_bookings(tag, utc_now(), 10),
                     lambda: wrong.object_info("videos", f"{tag}/x.mp4")):
            with pytest.raises(CloudUnavailable) as fault:
                call()
            assert fault.value.fault == "auth", str(fault.value)
    finally:
        wrong.close()


def _metadata(bucket: str, name: str, content_type: str = "video/mp4") -> str:
    from shared.store.cloud.tus import _metadata as encode

    return encode([("bucketName", bucket), ("objectName", name), ("contentType", content_type)])

