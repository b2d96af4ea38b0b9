"""The resumable endpoint checks an upload's size against the bucket's and the project's limit (413) and its MIME type
(415) at POST, in plain text (supabase/storage src/http/routes/tus/index.ts maxSize, lifecycle.ts onCreate); the
`videos` bucket has no limit of its own, so the project-wide one decides. A video over it must be a clear refusal
the operator sees (an alert naming the limit), and, once the limit is raised and the upload replayed, arrive."""

from __future__ import annotations

import json
import os

from shared.store.cloud.tus import CHUNK_SIZE
from tests.supabase.conftest import drain

MB = 1024 * 1024


def _put(store, tmp_path, name: str, size: int, content_type: str = "video/mp4") -> bytes:
    src = tmp_path / f"{name}.mp4"
    data = os.urandom(size)
    src.write_bytes(data)
    store.put_object("videos", f"u1/{name}.mp4", src, content_type)
    return data


def test_a_video_over_the_projects_limit_is_refused_at_creation_with_an_alert_naming_the_limit(
        store, status, cloud_settings, fake_cloud, listen, tmp_path):
    alerts = listen(f"ezrec/{cloud_settings.camera_id}/alerts")
    fake_cloud.configure(file_size_limit=10 * MB)
    data = _put(store, tmp_path, "big", 13 * MB)
    store.sync_now()
    assert [e["method"] for e in fake_cloud.requests() if e["method"] in ("POST", "PATCH")] == ["POST"], \
        "refused at creation: no byte sent"
    [(op_id, key, kind, error)] = store.outbox.rejected()
    assert (key, kind) == ("big", "object_put")
    assert "13.0 MB (13631488 bytes)" in error and "10.0 MB (10485760 bytes)" in error
    assert "project's upload limit" in error and "videos bucket has none of its own" in error

    snapshot = status.judge(status.collect())
    assert snapshot.alerts_active == [f"cloud_refused:{op_id}"]
    _, payload = alerts.wait_for(lambda t, p: json.loads(p)["id"] == f"cloud_refused:{op_id}")
    assert "10.0 MB (10485760 bytes)" in json.loads(payload)["message"]

    fake_cloud.configure(file_size_limit=50 * MB)  # the operator raises the limit and replays
    assert store.outbox.replay(op_id)
    drain(store)
    assert fake_cloud.object_file("videos", "u1/big.mp4").read_bytes() == data
    assert status.judge(status.collect()).alerts_active == []


def test_the_buckets_own_limit_is_named_when_it_decides(store, fake_cloud, db, tmp_path):
    db.execute("UPDATE storage.buckets SET file_size_limit = %s WHERE id = 'videos'", (7 * MB,))
    try:
        _put(store, tmp_path, "big", 8 * MB)
        store.sync_now()
    finally:
        db.execute("UPDATE storage.buckets SET file_size_limit = NULL WHERE id = 'videos'")
    [(_, _, _, error)] = store.outbox.rejected()
    assert "the videos bucket's limit of 7.0 MB (7340032 bytes)" in error


def test_a_small_video_over_a_bucket_limit_names_it_too(store, fake_cloud, db, tmp_path):
    """A standard upload (up to 6 MB) meets the same limit through Storage's JSON: HTTP 400 + statusCode 413."""
    db.execute("UPDATE storage.buckets SET file_size_limit = 1024 WHERE id = 'videos'")
    try:
        _put(store, tmp_path, "small", 4096)
        store.sync_now()
    finally:
        db.execute("UPDATE storage.buckets SET file_size_limit = NULL WHERE id = 'videos'")
    [(_, _, _, error)] = store.outbox.rejected()
    assert "(4096 bytes)" in error and "limit of 0.0 MB (1024 bytes)" in error


def test_a_type_the_bucket_does_not_take_is_refused_at_creation_naming_what_it_takes(store, fake_cloud, tmp_path):
    _put(store, tmp_path, "typed", CHUNK_SIZE + 10, content_type="video/quicktime")
    store.sync_now()
    [(_, _, _, error)] = store.outbox.rejected()
    assert "video/quicktime" in error and "the videos bucket takes video/mp4" in error
    assert [e["method"] for e in fake_cloud.requests() if e["method"] in ("POST", "PATCH")] == ["POST"]
