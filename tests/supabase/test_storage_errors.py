"""Storage answers almost every error with HTTP 400 and the real code in its body (supabase/storage
src/http/error-handler.ts): a temporary fault must be retried, not refused, and a key Storage does not accept is
a configuration fault (retried with backoff, reported), never a refused write that holds its booking.
Against tests/supabase/fakecloud.py, which answers the same way."""

from __future__ import annotations

import os

import pytest

from shared.store.cloud.errors import CloudRejected, CloudUnavailable, classify_storage_answer
from shared.store.cloud.tus import CHUNK_SIZE
from tests.supabase.conftest import drain
from tests.supabase.fakecloud import storage_body, storage_fault, tus_fault

READ_ONLY = ("DatabaseReadOnly", "The database is currently in read-only mode. Please try again later.")


def _video(store, tmp_path, name: str, size: int) -> bytes:
    src = tmp_path / f"{name}.mp4"
    data = os.urandom(size)
    src.write_bytes(data)
    store.put_object("videos", f"u1/{name}.mp4", src, "video/mp4")
    return data


def _stored(fake_cloud, name: str) -> bytes | None:
    file = fake_cloud.object_file("videos", f"u1/{name}.mp4")
    return file.read_bytes() if file.exists() else None


@pytest.mark.parametrize(("http", "body", "kind", "fault"), [
    (400, storage_body(503, *READ_ONLY), CloudUnavailable, "read_only"),
    (400, storage_body(409, "TransactionError", "serialization failure"), CloudUnavailable, None),
    (400, storage_body(423, "ResourceLocked", "The resource is locked"), CloudUnavailable, None),
    (400, storage_body(429, "SlowDown", "Too many connections issued to the database"), CloudUnavailable, None),
    (544, storage_body(544, "DatabaseTimeout", "The connection to the database timed out"), CloudUnavailable, None),
    (400, storage_body(403, "AccessDenied", "invalid signature", "Unauthorized"), CloudUnavailable, "auth"),
    (400, storage_body(404, "NoSuchBucket", "Bucket not found", "Bucket not found"), CloudRejected, None),
    (400, storage_body(413, "EntityTooLarge", "The object exceeded the maximum allowed size"), CloudRejected, None),
    (400, storage_body(415, "InvalidMimeType", "mime type text/plain is not supported"), CloudRejected, None),
    (400, storage_body(400, "InvalidKey", "Invalid key: a//b"), CloudRejected, None),
    (503, "acquiring lock timeout", CloudUnavailable, None),  # the TUS server: real status, plain text
    (423, "The resource is locked", CloudUnavailable, None),
    (413, "Maximum size exceeded\n", CloudRejected, None),
    (502, "<html>Bad Gateway</html>", CloudUnavailable, None),
])
def test_storage_answers_are_classified_by_their_real_code(http, body, kind, fault):
    error = classify_storage_answer(http, body if isinstance(body, str) else __import__("json").dumps(body), "op")
    assert type(error) is kind
    assert getattr(error, "fault", None) == fault


def test_a_temporary_storage_fault_answered_with_http_400_is_retried(store, fake_cloud, tmp_path):
    fake_cloud.inject(storage_fault(503, *READ_ONLY, method="POST", path="^/storage/v1/object/videos/", count=2))
    data = _video(store, tmp_path, "b1", 4096)
    drain(store)
    assert store.outbox.rejected() == [], "a read-only database is temporary, not a refusal"
    assert _stored(fake_cloud, "b1") == data


def test_a_storage_error_before_the_tus_server_runs_is_classified_by_its_body(store, fake_cloud, tmp_path):
    """The JWT check and the database plugin run before the TUS server: their errors come as Storage's JSON."""
    fake_cloud.inject(storage_fault(423, "ResourceLocked", "The resource is locked", method="POST",
                                    path="^/storage/v1/upload/resumable$"),
                      tus_fault(503, "acquiring lock timeout", method="PATCH", path="resumable/"))
    data = _video(store, tmp_path, "b2", CHUNK_SIZE + 1000)
    drain(store)
    assert store.outbox.rejected() == []
    assert _stored(fake_cloud, "b2") == data


def test_a_key_storage_does_not_accept_is_a_fault_retried_and_reported_not_a_refusal(store, fake_cloud, tmp_path):
    fake_cloud.inject(storage_fault(403, "AccessDenied", "invalid signature", "Unauthorized", method="POST",
                                    path="^/storage/v1/object/", count=2))
    data = _video(store, tmp_path, "b3", 4096)
    store.sync_now()
    assert store.outbox.rejected() == [] and store.outbox.pending_count() == 1, "kept and retried, not refused"
    [(name, message)] = [(f.name, f.message) for f in store.outbox.faults()]
    assert name == "storage:auth" and "SUPABASE_SERVICE_ROLE_KEY" in message and "403" in message
    drain(store)
    assert _stored(fake_cloud, "b3") == data
    assert store.outbox.faults() == [], "cleared once Storage accepts the key again"


def test_a_head_without_a_body_is_explained_by_asking_storage(store, fake_cloud, tmp_path):
    """A HEAD's answer has no body, so Storage's HTTP 400 there says nothing: ask Storage something that can say,
    so a key it does not accept is reported instead of the upload being refused."""
    fake_cloud.inject(tus_fault(503, "acquiring lock timeout", method="PATCH", path="resumable/", skip=1))
    data = _video(store, tmp_path, "b4", CHUNK_SIZE + 1000)
    store.sync_now()  # the first chunk lands, the second fails: the upload is kept for resuming
    denied = storage_fault(403, "AccessDenied", "invalid signature", "Unauthorized")
    fake_cloud.inject({**denied, "method": "HEAD", "path": "resumable/"}, {**denied, "path": "^/storage/v1/bucket/"})
    store.drainer.note_reachable()
    store.sync_now()
    assert store.outbox.rejected() == [] and [f.name for f in store.outbox.faults()] == ["storage:auth"]
    fake_cloud.clear_log()
    drain(store)
    assert [e["method"] for e in fake_cloud.requests()] == ["HEAD", "PATCH"], "resumed, not started again"
    assert _stored(fake_cloud, "b4") == data
