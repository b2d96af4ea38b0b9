"""Resumable uploads through Supabase's TUS endpoint (supabase-py has no TUS client).

The subset Supabase documents: POST creates an upload URL, HEAD reports the offset the server has, PATCH
appends one 6 MB chunk. The URL, its expiry (the POST's Upload-Expires: 1 h by default self-hosted, up to 24 h
hosted) and the last confirmed offset are kept in SQLite, so after a crash or a lost connection the upload
continues where the server says it is, not from zero; an expired URL (410, or 404 once forgotten) starts a new
upload. Kept by hand rather than tuspy, which has no timeouts and keeps its own resume store.
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
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from shared import spliced_file
from shared.store.cloud.errors import CloudRejected, CloudUnavailable, classify_storage_answer

log = logging.getLogger(__name__)

CHUNK_SIZE = 6 * 1024 * 1024
"""Supabase: 'it must be set to 6MB (for now) do not change it'."""
EXPIRY_MARGIN_S = 60.0
"""An upload URL expiring sooner than this is not worth resuming: a new one is created."""
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
    expires_at: float | None = None  # the server's Upload-Expires; None when it did not say

    def usable(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at - EXPIRY_MARGIN_S


class TusState:
    """Durable upload URL + its expiry + confirmed offset per upload key (an outbox operation)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tus_uploads (key TEXT PRIMARY KEY, url TEXT NOT NULL,"
                " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, offset INTEGER NOT NULL,"
                " created_at REAL NOT NULL, expires_at REAL)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(tus_uploads)")}
            if "expires_at" not in columns:  # an outbox file from before uploads kept their expiry
                self._db.execute("ALTER TABLE tus_uploads ADD COLUMN expires_at REAL")

    def get(self, key: str) -> TusRecord | None:
        with self._lock:
            row = self._db.execute("SELECT url, size, mtime_ns, offset, created_at, expires_at FROM tus_uploads"
                                   " WHERE key = ?", (key,)).fetchone()
        return TusRecord(*row) if row else None

    def start(self, key: str, url: str, size: int, mtime_ns: int, expires_at: float | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tus_uploads (key, url, size, mtime_ns, offset, created_at,"
                             " expires_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
                             (key, url, size, mtime_ns, time.time(), expires_at))

    def confirm(self, key: str, offset: int) -> None:
        with self._lock:
            self._db.execute("UPDATE tus_uploads SET offset = ? WHERE key = ?", (offset, key))

    def clear(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tus_uploads WHERE key = ?", (key,))


def _expiry(header: str | None) -> float | None:
    if not header:
        return None
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        log.warning("unreadable Upload-Expires %r; relying on the server's 404/410", header)
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()  # RFC 7231 dates are GMT


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
        size, mtime_ns = spliced_file.size(src), spliced_file.mtime_ns(src)
        url, offset = None, 0
        record = self.state.get(key)
        if record and record.size == size and record.mtime_ns == mtime_ns and record.usable(time.time()):
            found = self._head(record.url, bucket)
            if found is not None:
                url, offset = record.url, found
                log.info("resuming upload of %s/%s at %d of %d bytes", bucket, path, offset, size)
            else:
                log.info("upload URL of %s/%s expired or unknown to the server; starting a new upload", bucket, path)
        if url is None:
            url, expires_at = self._create(bucket, path, size, content_type, cache_control)
            self.state.start(key, url, size, mtime_ns, expires_at)
        finished = False  # the PATCH carrying the last byte succeeded: the server made the object
        conflicts = 0
        with spliced_file.open_read(src) as fh:
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
                        raise _StartAgain("the upload URL expired mid-upload")
                    offset = found
                    continue
                if response.status_code in (404, 410):
                    # @tus/server PatchHandler: FILE_NO_LONGER_EXISTS (410) past creation + expiration, FILE_NOT_FOUND
                    # (404) once the server forgot the upload: the bytes it had are gone with it.
                    raise _StartAgain(f"the upload URL expired (HTTP {response.status_code})")
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

    def _create(self, bucket: str, path: str, size: int, content_type: str,
                cache_control: str) -> tuple[str, float | None]:
        """A new upload URL and when it expires (@tus/server PostHandler: Upload-Expires = creation + the store's
        expiration, an RFC 7231 date; supabase/storage TUS_URL_EXPIRY_MS, 1 h by default)."""
        metadata = _metadata([("bucketName", bucket), ("objectName", path), ("contentType", content_type),
                              ("cacheControl", cache_control)])
        response = self.http.post(self.endpoint, headers={
            **self.headers, "Upload-Length": str(size), "Upload-Metadata": metadata})
        if response.status_code != 201 or "Location" not in response.headers:
            raise classify_storage_answer(response.status_code, response.content, f"TUS create {bucket}/{path}")
        location = urljoin(self.endpoint, response.headers["Location"])
        self._check_location(location, bucket, path)
        return location, _expiry(response.headers.get("Upload-Expires"))

    def _check_location(self, location: str, bucket: str, path: str) -> None:
        """Self-hosted storage builds Location from its own TUS path (/upload/resumable) and adds the gateway's
        prefix (/storage/v1) only when REQUEST_ALLOW_X_FORWARDED_PATH=true lets it read X-Forwarded-Prefix
        (supabase/storage src/http/routes/tus/lifecycle.ts generateUrl): without it every PATCH would reach the
        gateway's other routes, never Storage. Refused, with the fix, rather than sent there."""
        expected = urlsplit(self.endpoint).path.rstrip("/") + "/"
        if urlsplit(location).path.startswith(expected):
            return
        message = (f"the resumable endpoint gave {bucket}/{path} the upload URL {location}, outside {expected}: the "
                   f"storage service does not know it is served under the gateway's prefix. Set "
                   f"REQUEST_ALLOW_X_FORWARDED_PATH=true in its environment (self-hosted Supabase's storage service), "
                   f"then replay the upload")
        log.error("%s", message)
        raise CloudRejected(message, reason="location")

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
