"""Resumable uploads through Supabase's TUS endpoint (supabase-py has no TUS client).

The subset Supabase documents: POST creates an upload URL (valid up to 24 h), HEAD reports the offset
the server has, PATCH appends one 6 MB chunk. The URL and the last confirmed offset are kept in SQLite,
so after a crash or a lost connection the upload continues where the server says it is, not from zero.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from shared.store.cloud.errors import CloudUnavailable, classify_storage_answer

log = logging.getLogger(__name__)

CHUNK_SIZE = 6 * 1024 * 1024
"""Supabase: 'it must be set to 6MB (for now) do not change it'."""
URL_LIFETIME_S = 23 * 3600
"""Upload URLs live up to 24 h; older than this we start a new one instead of racing the expiry."""
TUS_VERSION = "1.0.0"
MAX_STARTS = 3
"""Fresh uploads in one call (after an expired URL or a failed completion) before it is left to the drainer."""


class _StartAgain(Exception):
    """The saved upload cannot finish this object: forget it and create a new one."""


def upload_version(url: str, bucket: str, path: str) -> str | None:
    """The object version a Supabase upload URL carries: its last segment is base64url of `bucket/name/version`
    (src/http/routes/tus/lifecycle.ts generateUrl, src/storage/protocols/tus/upload-id.ts; `-$v-` before the
    version with TUS_USE_FILE_VERSION_SEPARATOR). None for a URL of another shape."""
    segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    for separator in ("/", "-$v-"):
        prefix = f"{bucket}/{path}{separator}"
        if decoded.startswith(prefix) and "/" not in decoded[len(prefix):]:
            return decoded[len(prefix):] or None
    return None


@dataclass(frozen=True)
class TusRecord:
    url: str
    size: int
    mtime_ns: int
    offset: int
    created_at: float


class TusState:
    """Durable upload URL + confirmed offset per upload key (an outbox operation)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tus_uploads (key TEXT PRIMARY KEY, url TEXT NOT NULL,"
                " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, offset INTEGER NOT NULL,"
                " created_at REAL NOT NULL)")

    def get(self, key: str) -> TusRecord | None:
        with self._lock:
            row = self._db.execute("SELECT url, size, mtime_ns, offset, created_at FROM tus_uploads WHERE key = ?",
                                   (key,)).fetchone()
        return TusRecord(*row) if row else None

    def start(self, key: str, url: str, size: int, mtime_ns: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tus_uploads VALUES (?, ?, ?, ?, 0, ?)",
                             (key, url, size, mtime_ns, time.time()))

    def confirm(self, key: str, offset: int) -> None:
        with self._lock:
            self._db.execute("UPDATE tus_uploads SET offset = ? WHERE key = ?", (offset, key))

    def clear(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tus_uploads WHERE key = ?", (key,))


def _metadata(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs)


class TusUploader:
    def __init__(self, http: httpx.Client, endpoint: str, auth: dict[str, str], state: TusState,
                 probe: Callable[[str], None], object_info: Callable[[str, str], dict[str, Any] | None]) -> None:
        self.http, self.endpoint, self.state = http, endpoint, state
        self.probe, self.object_info = probe, object_info
        self.headers = {**auth, "Tus-Resumable": TUS_VERSION, "x-upsert": "true"}

    def upload(self, key: str, bucket: str, path: str, src: Path, content_type: str, cache_control: str,
               progress: Callable[[int, int], None] | None = None) -> None:
        """Returns only once the object exists: the last PATCH succeeded, or the object's info confirms it."""
        for _ in range(MAX_STARTS):
            try:
                self._attempt(key, bucket, path, src, content_type, cache_control, progress)
                return
            except _StartAgain as exc:
                self.state.clear(key)
                log.warning("upload of %s/%s starts again: %s", bucket, path, exc)
        raise CloudUnavailable(f"upload of {bucket}/{path} had to start again {MAX_STARTS} times in a row")

    def _attempt(self, key: str, bucket: str, path: str, src: Path, content_type: str, cache_control: str,
                 progress: Callable[[int, int], None] | None) -> None:
        stat = src.stat()
        size = stat.st_size
        url, offset = None, 0
        record = self.state.get(key)
        if record and record.size == size and record.mtime_ns == stat.st_mtime_ns \
                and time.time() - record.created_at < URL_LIFETIME_S:
            found = self._head(record.url, bucket)
            if found is not None:
                url, offset = record.url, found
                log.info("resuming upload of %s/%s at %d of %d bytes", bucket, path, offset, size)
        if url is None:
            url = self._create(bucket, path, size, content_type, cache_control)
            self.state.start(key, url, size, stat.st_mtime_ns)
        finished = False  # the PATCH carrying the last byte succeeded: the server made the object
        conflicts = 0
        with open(src, "rb") as fh:
            while offset < size:
                fh.seek(offset)
                chunk = fh.read(CHUNK_SIZE)
                response = self.http.patch(url, content=chunk, headers={
                    **self.headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
                if response.status_code == 409 and conflicts < 3:
                    # Offset mismatch (a chunk landed but its answer was lost) or the upload lock is held:
                    # ask the server where it is and continue from there.
                    conflicts += 1
                    found = self._head(url, bucket)
                    if found is None:
                        raise CloudUnavailable(f"upload URL for {bucket}/{path} expired mid-upload")
                    offset = found
                    continue
                if response.status_code != 204:
                    raise classify_storage_answer(response.status_code, response.content, f"TUS PATCH {bucket}/{path}")
                offset = int(response.headers["Upload-Offset"])
                finished = offset == size
                self.state.confirm(key, offset)
                if progress is not None:
                    progress(offset, size)
        if not finished:
            self._confirm_object(bucket, path, size, url)
        self.state.clear(key)

    def _confirm_object(self, bucket: str, path: str, size: int, url: str) -> None:
        """The server has every byte, but that does not say the object was made: supabase/storage answers HEAD with
        offset = size once the last byte is in (@tus/s3-store getUpload) even when onUploadFinish failed to make the
        object (src/http/routes/tus/lifecycle.ts). Only the object itself, at this upload's version, settles it."""
        info = self.object_info(bucket, path)
        if info is None:
            raise _StartAgain("the server has every byte but no object (finishing the upload failed)")
        version = upload_version(url, bucket, path)
        if info.get("size") != size or (version and info.get("version") and info["version"] != version):
            raise _StartAgain(f"the object there is not this upload's (size {info.get('size')}, version "
                              f"{info.get('version')}; this upload: {size} bytes, version {version})")
        log.info("upload of %s/%s confirmed by the object's info (version %s)", bucket, path, version)

    def _create(self, bucket: str, path: str, size: int, content_type: str, cache_control: str) -> str:
        metadata = _metadata([("bucketName", bucket), ("objectName", path), ("contentType", content_type),
                              ("cacheControl", cache_control)])
        response = self.http.post(self.endpoint, headers={
            **self.headers, "Upload-Length": str(size), "Upload-Metadata": metadata})
        if response.status_code != 201 or "Location" not in response.headers:
            raise classify_storage_answer(response.status_code, response.content, f"TUS create {bucket}/{path}")
        return urljoin(self.endpoint, response.headers["Location"])

    def _head(self, url: str, bucket: str) -> int | None:
        """The server's offset, or None when the upload URL is gone (expired or unknown)."""
        response = self.http.head(url, headers=self.headers)
        if response.status_code in (404, 410):
            return None
        if response.status_code == 400:
            # Storage's own errors (the JWT check, the database) are HTTP 400 with the real code in a body a HEAD
            # cannot carry: ask Storage something that can say, and raise what it says.
            self.probe(bucket)
            raise CloudUnavailable(f"TUS HEAD {url}: HTTP 400 without a body (Storage answers other requests)")
        if response.status_code not in (200, 204) or "Upload-Offset" not in response.headers:
            raise classify_storage_answer(response.status_code, b"", f"TUS HEAD {url}")
        return int(response.headers["Upload-Offset"])
