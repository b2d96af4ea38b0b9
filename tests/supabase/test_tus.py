"""Resumable uploads survive interruptions: the server dying mid-chunk, the uploading process killed,
an expired upload URL. Verified against tests/supabase/fakecloud.py (TUS 1.0.0 creation, HEAD, PATCH
with Supabase's 6 MB chunks; a chunk that does not arrive whole is not kept, as on Supabase)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from shared import spliced_file
from shared.spliced_file import SpliceBuilder
from shared.store.cloud import CloudUnavailable
from shared.store.cloud.outbox import CloudOutbox
from shared.store.cloud.tus import CHUNK_SIZE
from tests.supabase.conftest import ROOT, drain
from tests.supabase.fakecloud import tus_fault

SIZE = 3 * CHUNK_SIZE + 12345


def _big(tmp_path):
    src = tmp_path / "big.mp4"
    src.write_bytes(os.urandom(SIZE))
    return src


def _patches(fake_cloud):
    return [e for e in fake_cloud.requests() if e["method"] == "PATCH"]


def test_server_dies_mid_chunk_and_the_restarted_client_resumes_at_the_confirmed_offset(
        make_store, fake_cloud, tmp_path):
    fake_cloud.stop()
    fake_cloud.start("--die-after-patch-bytes", str(2 * CHUNK_SIZE + CHUNK_SIZE // 2))  # dies inside chunk 3
    src = _big(tmp_path)
    first = make_store()
    first.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    with pytest.raises(CloudUnavailable):
        first.drainer.apply(first.outbox.pending()[0])
    assert fake_cloud.wait_exit(10) == 3
    assert first.outbox.tus.get("op1").offset == 2 * CHUNK_SIZE  # persisted after each confirmed chunk
    first.close()  # the service restarts too

    fake_cloud.clear_log()
    fake_cloud.start()
    second = make_store()
    drain(second)
    after = fake_cloud.requests()
    assert [e["method"] for e in after] == ["HEAD", "PATCH", "PATCH"]  # no new upload created
    assert after[0]["status"] == 200
    assert [p["body"]["upload_offset"] for p in after[1:]] == [str(2 * CHUNK_SIZE), str(3 * CHUNK_SIZE)]
    assert sum(p["body"]["size"] for p in after[1:]) == SIZE - 2 * CHUNK_SIZE  # not from zero
    stored = fake_cloud.events("object_stored")
    assert len(stored) == 1 and stored[0]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert second.outbox.tus.get("op1") is None and second.outbox.pending_count() == 0


_CHILD = """
import sys, time
from pathlib import Path
from shared.settings import Settings
from shared.store.cloud import SupabaseStore
settings = Settings(_env_file=None, data_dir=Path(sys.argv[1]), supabase_url=sys.argv[2],
                    supabase_service_role_key=sys.argv[3])
settings.ensure_dirs()
store = SupabaseStore(settings)
store.put_object("videos", "u1/b1.mp4", Path(sys.argv[4]), "video/mp4")
print("queued", flush=True)
store.sync_now()
time.sleep(60)
"""


def test_uploading_process_killed_mid_upload_resumes_after_restart(make_store, fake_cloud, cloud_settings,
                                                                    tmp_path):
    fake_cloud.stop()
    fake_cloud.start("--patch-delay", "0.4")  # slow enough to kill the client between chunks
    src = _big(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(cloud_settings.data_dir), fake_cloud.url,
                              cloud_settings.supabase_service_role_key.get_secret_value(), str(src)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not [p for p in _patches(fake_cloud) if p["status"] == 204]:
            assert time.monotonic() < deadline, "no chunk confirmed"
            assert child.poll() is None, "uploader exited early"
            time.sleep(0.02)
        child.kill()  # kill -9 mid-upload
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    confirmed = max(int(p["body"]["upload_offset"]) + p["body"]["size"]
                    for p in _patches(fake_cloud) if p["status"] == 204)
    assert 0 < confirmed < SIZE
    fake_cloud.clear_log()
    fake_cloud.stop()
    fake_cloud.start()
    store = make_store()
    drain(store)
    after = fake_cloud.requests()
    assert after[0]["method"] == "HEAD" and not [e for e in after if e["method"] == "POST"]
    resumed_at = int(after[1]["body"]["upload_offset"])
    assert resumed_at >= confirmed > 0
    assert sum(p["body"]["size"] for p in _patches(fake_cloud)) == SIZE - resumed_at
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def test_an_expired_upload_url_starts_a_new_upload(make_store, fake_cloud, tmp_path):
    fake_cloud.stop()
    fake_cloud.start("--die-after-patch-bytes", str(CHUNK_SIZE + 10))
    src = _big(tmp_path)
    store = make_store()
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    with pytest.raises(CloudUnavailable):
        store.drainer.apply(store.outbox.pending()[0])
    fake_cloud.wait_exit(10)
    shutil.rmtree(fake_cloud.root / "tus")  # the server forgot the upload (URLs live up to 24 h)
    fake_cloud.clear_log()
    fake_cloud.start()
    drain(store)
    methods = [(e["method"], e["status"]) for e in fake_cloud.requests()]
    assert methods[:2] == [("HEAD", 404), ("POST", 201)]
    assert [m for m, _ in methods[2:]] == ["PATCH"] * 4
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def _object_steps(fake_cloud) -> list[str]:
    """The client's requests, in order, with the status each got."""
    return [f"{e['method']} {e['status']}" for e in fake_cloud.requests()]


def test_a_failed_completion_after_the_last_byte_is_not_taken_for_a_finished_upload(store, fake_cloud, tmp_path):
    """The real server says offset = size on HEAD as soon as the last byte is in, even when making the object then
    failed and the last PATCH got a 5xx (@tus/s3-store getUpload): the client must check the object exists, and
    since it does not, start again; otherwise the disk guard may delete the only copy of the video."""
    fake_cloud.inject(tus_fault(503, "acquiring lock timeout", method="PATCH", path="resumable/", phase="completion"))
    src = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    drain(store)
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()
    assert _object_steps(fake_cloud) == [
        "POST 201", "PATCH 204", "PATCH 204", "PATCH 204", "PATCH 503",  # the object was never made
        "HEAD 200", "GET 400",  # HEAD: every byte is there; object info: Storage's 404 (HTTP 400)
        "POST 201", "PATCH 204", "PATCH 204", "PATCH 204", "PATCH 204"]
    assert store.outbox.rejected() == [] and store.outbox.tus.get("op1") is None


def test_a_lost_answer_to_the_last_patch_is_settled_by_the_objects_version(make_store, store, fake_cloud, tmp_path):
    """The last PATCH made the object but its answer was lost: HEAD says every byte is in, the object's info shows
    this upload's version (the upload URL carries it), so it is done without sending the bytes again."""
    src = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    drain(store)
    url = next(e for e in fake_cloud.requests() if e["method"] == "PATCH")["path"]
    # the same upload again, as if the process had died before reading the last PATCH's answer
    op_id = store.outbox.add("object_put", "b1", {"bucket": "videos", "path": "u1/b1.mp4",
                                                  "content_type": "video/mp4", "size": SIZE})
    mirror = store.local_object_path("videos", "u1/b1.mp4")
    store.outbox.tus.start(f"op{op_id}", fake_cloud.url + url, SIZE, mirror.stat().st_mtime_ns)
    fake_cloud.clear_log()
    drain(store)
    assert _object_steps(fake_cloud) == ["HEAD 200", "GET 200"]
    assert len(fake_cloud.events("object_stored")) == 0 and store.outbox.rejected() == []


def test_an_older_object_of_the_same_size_is_not_taken_for_this_upload(store, fake_cloud, tmp_path):
    """A video made again (same size, new bytes) whose completion failed: the object there is the old one."""
    first = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", first, "video/mp4")
    drain(store)
    again = tmp_path / "again.mp4"
    again.write_bytes(os.urandom(SIZE))
    fake_cloud.inject(tus_fault(500, "database error, code: 40001", method="PATCH", path="resumable/",
                                phase="completion"))
    store.put_object("videos", "u1/b1.mp4", again, "video/mp4")
    drain(store)
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == again.read_bytes()


def test_an_upload_url_expiring_mid_upload_starts_a_new_upload(store, fake_cloud, tmp_path):
    """PATCH answers 410 once the URL expired (self-hosted default: 1 h after creation, @tus/server PatchHandler):
    a new upload, not a refused write that holds the booking."""
    fake_cloud.inject({"method": "PATCH", "path": "resumable/", "skip": 1, "expire": True})
    src = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    drain(store)
    assert store.outbox.rejected() == []
    assert _object_steps(fake_cloud) == ["POST 201", "PATCH 204", "PATCH 410",
                                         "POST 201", "PATCH 204", "PATCH 204", "PATCH 204", "PATCH 204"]
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def test_the_upload_url_lifetime_is_the_servers_upload_expires(store, fake_cloud, tmp_path):
    """The POST says when the URL expires (Upload-Expires); past it the client starts a new upload at once instead of
    asking about a URL it knows is gone (and never trusts a fixed lifetime the server may not have)."""
    fake_cloud.configure(tus_expiry_s=3)
    fake_cloud.inject(tus_fault(503, "acquiring lock timeout", method="PATCH", path="resumable/", skip=1))
    src = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    before = time.time()
    with pytest.raises(CloudUnavailable):
        store.drainer.apply(store.outbox.pending()[0])
    record = store.outbox.tus.get("op1")
    assert record.offset == CHUNK_SIZE and before + 1 < record.expires_at < time.time() + 4
    time.sleep(max(0.0, record.expires_at - time.time()) + 0.1)
    fake_cloud.clear_log()
    drain(store)
    assert _object_steps(fake_cloud)[0] == "POST 201", "no HEAD for an upload URL past its expiry"
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def test_an_outbox_file_from_before_upload_expiry_is_carried_over(tmp_path):
    """A device updated mid-upload keeps its saved upload (no expiry known: the server's 404/410 decides)."""
    path = tmp_path / "cloud-outbox.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE tus_uploads (key TEXT PRIMARY KEY, url TEXT NOT NULL, size INTEGER NOT NULL,"
                    " mtime_ns INTEGER NOT NULL, offset INTEGER NOT NULL, created_at REAL NOT NULL)")
        old.execute("INSERT INTO tus_uploads VALUES ('op1', 'http://x/u', 10, 1, 6, 100.0)")
    outbox = CloudOutbox(path)
    try:
        record = outbox.tus.get("op1")
        assert (record.offset, record.expires_at) == (6, None) and record.usable(time.time())
        outbox.tus.start("op2", "http://x/v", 10, 1, expires_at=time.time() + 30)
        assert not outbox.tus.get("op2").usable(time.time()), "expiring within the margin: not worth resuming"
    finally:
        outbox.close()


def test_a_location_without_storage_v1_is_refused_naming_the_fix(store, fake_cloud, tmp_path, caplog):
    """Self-hosted storage builds Location from its own path (/upload/resumable) unless it honours the gateway's
    X-Forwarded-Prefix (REQUEST_ALLOW_X_FORWARDED_PATH, src/http/routes/tus/lifecycle.ts generateUrl): PATCHes to
    it reach the gateway's catch-all, not Storage. Detected, explained, refused; replayed once fixed."""
    fake_cloud.configure(tus_location_prefix="")
    src = _big(tmp_path)
    store.put_object("videos", "u1/b1.mp4", src, "video/mp4")
    store.sync_now()
    [(op_id, _, _, error)] = store.outbox.rejected()
    assert "/storage/v1" in error and "REQUEST_ALLOW_X_FORWARDED_PATH=true" in error
    assert "REQUEST_ALLOW_X_FORWARDED_PATH=true" in caplog.text
    assert [e["method"] for e in fake_cloud.requests() if e["method"] in ("POST", "PATCH")] == ["POST"]
    fake_cloud.configure(tus_location_prefix="/storage/v1")
    assert store.outbox.replay(op_id)
    drain(store)
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def test_a_video_kept_as_a_splice_uploads_its_bytes_and_resumes_mid_upload(make_store, fake_cloud, tmp_path):
    """The remux path's video is a splice (shared/spliced_file.py): the upload reads the spliced bytes, resumes
    at the confirmed offset across a restart, and the object is those bytes exactly."""
    fake_cloud.stop()
    fake_cloud.start("--die-after-patch-bytes", str(CHUNK_SIZE + CHUNK_SIZE // 2))  # dies inside chunk 2
    big = _big(tmp_path)
    builder = SpliceBuilder(tmp_path / "spliced.mp4")
    builder.span(builder.written("head.bin", b"moov" * 5000), 0, 20000)
    builder.span(builder.source(big), CHUNK_SIZE - 7, 2 * CHUNK_SIZE)
    builder.span(builder.source(big), 0, 12345)
    splice = builder.commit()
    with spliced_file.open_read(splice) as fh:
        expected = fh.read()
    first = make_store()
    first.put_object("videos", "u1/b1.mp4", splice, "video/mp4")
    with pytest.raises(CloudUnavailable):
        first.drainer.apply(first.outbox.pending()[0])
    assert fake_cloud.wait_exit(10) == 3
    assert first.outbox.tus.get("op1").offset == CHUNK_SIZE
    first.close()

    fake_cloud.clear_log()
    fake_cloud.start()
    second = make_store()
    drain(second)
    assert [e["method"] for e in fake_cloud.requests()] == ["HEAD", "PATCH", "PATCH"]  # resumed, not restarted
    stored = fake_cloud.events("object_stored")
    assert len(stored) == 1 and stored[0]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert stored[0].get("size", len(expected)) == len(expected)
