"""The fake answers as the real servers do (each case names the source in tests/supabase/fakecloud.py), and its
fault-injection switch works from outside its process. Plain HTTP here: no EZREC code in between."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.supabase.conftest import KEY
from tests.supabase.fakecloud import CHUNK, pg_http_status, postgrest_fault, storage_fault, tus_fault

AUTH = {"apikey": KEY, "Authorization": f"Bearer {KEY}"}
TUS = {**AUTH, "Tus-Resumable": "1.0.0", "x-upsert": "true"}


@pytest.fixture
def http(fake_cloud):
    with httpx.Client(base_url=fake_cloud.url, headers=AUTH, timeout=30) as client:
        yield client


def _metadata(bucket: str, name: str, content_type: str = "video/mp4") -> str:
    pairs = {"bucketName": bucket, "objectName": name, "contentType": content_type, "cacheControl": "3600"}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def _create(http, size: int, name: str = "u1/b1.mp4", content_type: str = "video/mp4") -> httpx.Response:
    headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": _metadata("videos", name, content_type)}
    return http.post("/storage/v1/upload/resumable", headers=headers)


def _patch(http, url: str, offset: int, data: bytes) -> httpx.Response:
    return http.patch(url, content=data, headers={**TUS, "Upload-Offset": str(offset),
                                                  "Content-Type": "application/offset+octet-stream"})


def test_storage_errors_are_http_400_with_the_real_code_in_the_body(http):
    missing = http.get("/storage/v1/object/info/videos/u1/none.mp4")
    assert missing.status_code == 400
    assert missing.json() == {"statusCode": "404", "code": "NoSuchKey", "error": "not_found",
                              "message": "Object not found"}
    assert http.get("/storage/v1/object/videos/u1/none.mp4").json()["statusCode"] == "404"
    assert http.get("/storage/v1/object/info/nobucket/x.mp4").json()["error"] == "Bucket not found"
    wrong_type = http.post("/storage/v1/object/videos/u1/b1.mp4", files={"file": ("b1.mp4", b"x", "text/plain")})
    assert (wrong_type.status_code, wrong_type.json()["statusCode"], wrong_type.json()["error"]) == (
        400, "415", "invalid_mime_type")
    bad_key = http.get("/storage/v1/object/info/videos/u1/none.mp4", headers={"Authorization": "Bearer nope"})
    assert (bad_key.status_code, bad_key.json()["statusCode"], bad_key.json()["error"]) == (400, "403", "Unauthorized")
    rest_bad_key = http.get("/rest/v1/bookings", headers={"apikey": "nope"})
    assert (rest_bad_key.status_code, rest_bad_key.json()) == (401, {"message": "Invalid authentication credentials"})


def test_storage_object_info_and_bucket(http, fake_cloud):
    http.post("/storage/v1/object/videos/u1/b1.mp4", files={"file": ("b1.mp4", b"abc", "video/mp4")},
              data={"cacheControl": "3600"}, headers={"x-upsert": "true"})
    info = http.get("/storage/v1/object/info/videos/u1/b1.mp4").json()
    assert (info["name"], info["bucket_id"], info["size"], info["content_type"]) == ("u1/b1.mp4", "videos", 3,
                                                                                     "video/mp4")
    assert info["version"] and info["cache_control"] == "max-age=3600"
    bucket = http.get("/storage/v1/bucket/videos").json()
    assert (bucket["id"], bucket["file_size_limit"], bucket["allowed_mime_types"]) == ("videos", None, ["video/mp4"])


def test_postgrest_errors_carry_the_sqlstate_and_its_http_status(http, db):
    row = {"id": "b1", "user_id": "u1", "camera_id": "c1", "start_time": "2030-01-01T10:00:00+00:00",
           "end_time": "2030-01-01T11:00:00+00:00"}
    assert http.post("/rest/v1/bookings", json=row).status_code == 201
    duplicate = http.post("/rest/v1/bookings", json=row)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "23505"
    assert set(duplicate.json()) == {"code", "message", "details", "hint"}
    bad = http.post("/rest/v1/bookings", json={**row, "id": "b2", "status": "lost"})
    assert (bad.status_code, bad.json()["code"]) == (400, "23514")
    assert http.get("/rest/v1/nothing").json()["code"] == "PGRST205"
    assert [pg_http_status(c) for c in ("25006", "08006", "53300", "40001", "57014", "57P01", "42501")] == [
        405, 503, 503, 500, 500, 503, 403]


def test_read_only_database_answers_25006_on_every_write(http, fake_cloud, db):
    fake_cloud.configure(read_only=True)
    write = http.post("/rest/v1/bookings", json={"id": "b1", "user_id": "u1", "camera_id": "c1",
                                                 "start_time": "2030-01-01T10:00:00+00:00",
                                                 "end_time": "2030-01-01T11:00:00+00:00"})
    assert (write.status_code, write.json()["code"]) == (405, "25006")
    assert http.get("/rest/v1/bookings").status_code == 200
    upload = http.post("/storage/v1/object/videos/u1/b1.mp4", files={"file": ("b1.mp4", b"x", "video/mp4")})
    assert (upload.status_code, upload.json()["statusCode"], upload.json()["code"]) == (400, "503", "DatabaseReadOnly")
    assert _create(http, 10).status_code == 503


def test_db_max_rows_cuts_a_result_silently(http, fake_cloud, db):
    for i in range(7):
        db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time)"
                   " VALUES (%s, 'u1', 'c1', %s, %s)",
                   (f"b{i}", datetime(2030, 1, 1, i, tzinfo=UTC), datetime(2030, 1, 1, i, 30, tzinfo=UTC)))
    fake_cloud.configure(db_max_rows=3)
    first = http.get("/rest/v1/bookings", params={"select": "id", "order": "id.asc", "limit": "1000"})
    assert (first.status_code, [r["id"] for r in first.json()]) == (200, ["b0", "b1", "b2"])
    assert first.headers["content-range"] == "0-2/*"
    last = http.get("/rest/v1/bookings", params={"select": "id", "order": "id.asc", "limit": "3", "offset": "6"})
    assert [r["id"] for r in last.json()] == ["b6"] and last.headers["content-range"] == "6-6/*"
    empty = http.get("/rest/v1/bookings", params={"select": "id", "order": "id.asc", "offset": "7"})
    assert empty.json() == [] and empty.headers["content-range"] == "*/*"


def test_tus_creation_checks_limits_and_type_in_plain_text(http, fake_cloud):
    options = http.options("/storage/v1/upload/resumable", headers={"Tus-Resumable": "1.0.0"})
    assert options.headers["tus-max-size"] == str(50 * 1024 * 1024)
    fake_cloud.configure(file_size_limit=1000)
    too_big = _create(http, 1001)
    assert (too_big.status_code, too_big.text) == (413, "Maximum size exceeded\n")
    assert too_big.headers["content-type"].startswith("text/plain")
    wrong_type = _create(http, 10, content_type="text/plain")
    assert (wrong_type.status_code, wrong_type.text) == (415, "mime type text/plain is not supported")
    created = _create(http, 1000)
    assert created.status_code == 201
    expires = parsedate_to_datetime(created.headers["upload-expires"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)  # self-hosted default: 1 h
    url_id = created.headers["location"].rsplit("/", 1)[1]
    decoded = base64.urlsafe_b64decode(url_id + "=" * (-len(url_id) % 4)).decode()
    assert decoded.startswith("videos/u1/b1.mp4/") and created.headers["location"].startswith(
        f"{fake_cloud.url}/storage/v1/upload/resumable/")
    fake_cloud.configure(tus_location_prefix="")
    assert "/storage/v1/" not in _create(http, 1000).headers["location"]


def test_tus_head_says_complete_even_when_finishing_the_upload_failed(http, fake_cloud):
    fake_cloud.inject(tus_fault(503, "acquiring lock timeout", method="PATCH", path="resumable", phase="completion"))
    url = _create(http, CHUNK + 10).headers["location"]
    data = os.urandom(CHUNK + 10)
    assert _patch(http, url, 0, data[:CHUNK]).status_code == 204
    failed = _patch(http, url, CHUNK, data[CHUNK:])
    assert (failed.status_code, failed.text) == (503, "acquiring lock timeout")
    head = http.head(url, headers=TUS)
    assert (head.status_code, head.headers["upload-offset"]) == (200, str(CHUNK + 10))
    assert http.get("/storage/v1/object/info/videos/u1/b1.mp4").json()["statusCode"] == "404"  # no object


def test_tus_expired_upload_answers_410(http, fake_cloud):
    url = _create(http, CHUNK + 10).headers["location"]
    assert fake_cloud.expire_uploads() == 1
    assert http.head(url, headers=TUS).status_code == 410
    gone = _patch(http, url, 0, os.urandom(CHUNK))
    assert (gone.status_code, gone.text) == (410, "The file for this url no longer exists\n")
    assert http.head(url.rsplit("/", 1)[0] + "/bm9uZQ", headers=TUS).status_code == 404


def test_fault_rules_match_method_and_path_skip_and_count(http, fake_cloud, db):
    [rule] = fake_cloud.inject(postgrest_fault("25006", "cannot execute INSERT in a read-only transaction",
                                               method="POST", path="^/rest/v1/bookings$", skip=1, count=2))
    row = {"user_id": "u1", "camera_id": "c1", "start_time": "2030-01-01T10:00:00+00:00",
           "end_time": "2030-01-01T11:00:00+00:00"}
    answers = [http.post("/rest/v1/bookings", json={**row, "id": f"b{i}"}).status_code for i in range(4)]
    assert answers == [201, 405, 405, 201]
    assert http.get("/rest/v1/bookings").status_code == 200  # GET: not matched
    [listed] = fake_cloud.faults()
    assert (listed["id"], listed["hits"], listed["seen"]) == (rule["id"], 2, 3)
    assert [e.get("injected") for e in fake_cloud.requests() if e["method"] == "POST"] == [
        None, rule["id"], rule["id"], None]
    fake_cloud.inject(storage_fault(503, "DatabaseReadOnly", "read only", path="^/storage/v1/object/", count=None))
    for _ in range(3):
        answer = http.get("/storage/v1/object/info/videos/x.mp4")
        assert (answer.status_code, answer.json()["statusCode"]) == (400, "503")
    fake_cloud.clear_faults()
    assert fake_cloud.faults() == []
    assert http.get("/storage/v1/object/info/videos/x.mp4").json()["statusCode"] == "404"
