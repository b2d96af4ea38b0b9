"""Every request EZREC makes to Supabase, one method each, through supabase-py (tables and storage)
plus a small TUS client for large objects. No local state here: SupabaseStore and the outbox decide
when to call. Requests follow Supabase's documentation; tests/supabase/test_contract.py pins them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from postgrest import APIError
from postgrest.types import ReturnMethod
from storage3.exceptions import StorageApiError

from shared import spliced_file
from shared.atomic import atomic_path
from shared.models import BookingStatus
from shared.store.base import NotFound
from shared.store.cloud.errors import (
    CloudRejected,
    CloudUnavailable,
    classify_postgrest,
    classify_storage,
    classify_storage_answer,
    storage_code,
)
from shared.store.cloud.rows import iso
from shared.store.cloud.tus import CHUNK_SIZE, TusState, TusUploader
from supabase import Client, ClientOptions, create_client

log = logging.getLogger(__name__)

STANDARD_UPLOAD_MAX = CHUNK_SIZE
"""Supabase advises standard (single request) uploads only up to 6 MB; larger ones go through TUS."""
CACHE_CONTROL = "3600"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB ({size} bytes)"


def _same(theirs: Any, ours: Any) -> bool:
    """A value read back from PostgREST against the one written: timestamps as instants, numbers as numbers."""
    if isinstance(theirs, str) and isinstance(ours, str) and theirs != ours:
        try:
            return datetime.fromisoformat(theirs) == datetime.fromisoformat(ours)
        except ValueError:
            return False
    if isinstance(theirs, int | float) and isinstance(ours, int | float) and not isinstance(ours, bool):
        return float(theirs) == float(ours)
    return bool(theirs == ours)


class CloudClient:
    def __init__(self, url: str, service_key: str, *, timeout_s: float, tus_state: TusState) -> None:
        self._last_status = threading.local()
        # One httpx client for tables, storage and TUS: the timeout is set here (supabase-py's storage
        # default is 20 s, too short for a video on a court's uplink) and every response's status is
        # noted, so errors can be told apart (retry later vs refused) whatever the library raises.
        self.http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                 follow_redirects=True, event_hooks={"response": [self._note_status]})
        self.url = url.rstrip("/")
        self.supabase: Client = create_client(self.url, service_key, options=ClientOptions(
            httpx_client=self.http, auto_refresh_token=False, persist_session=False, postgrest_client_retry=False))
        self._auth = {"apikey": service_key, "Authorization": f"Bearer {service_key}"}
        self.tus = TusUploader(self.http, f"{self.url}/storage/v1/upload/resumable", self._auth, tus_state,
                               probe=self.probe_storage, object_info=self.object_info)

    def close(self) -> None:
        self.http.close()

    # ---- error handling ------------------------------------------------------------------------------

    def _note_status(self, response: httpx.Response) -> None:
        self._last_status.value = response.status_code

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._last_status.value = None
        try:
            return fn()
        except httpx.TransportError as exc:
            raise CloudUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        except APIError as exc:  # PostgREST's status is the real one; its code is the SQLSTATE or PGRSTxxx
            detail = "; ".join(str(part) for part in (exc.message, exc.details, exc.hint) if part)
            raise classify_postgrest(getattr(self._last_status, "value", None), exc.code, what,
                                     detail=detail) from exc
        except StorageApiError as exc:  # storage3 carries the body's statusCode and error (or the HTTP status)
            http_status = getattr(self._last_status, "value", None)
            raise classify_storage(exc.status, what, code=exc.code, http_status=http_status,
                                   detail=exc.message) from exc

    def _upsert(self, what: str, table: str, row: dict[str, Any], on_conflict: str, *,
                ignore_duplicates: bool = False) -> None:
        """An idempotent write. PostgREST's 409 (a unique or foreign-key violation) is permanent, so it is looked at:
        the cloud already holding this row (any row on the conflict keys, for ignore-duplicates) settles it;
        otherwise it is refused with the cloud's row in the error, for the operator."""
        try:
            self._call(what, lambda: self.supabase.table(table).upsert(
                row, on_conflict=on_conflict, ignore_duplicates=ignore_duplicates,
                returning=ReturnMethod.minimal).execute())
        except CloudRejected as exc:
            if exc.reason != "conflict":
                raise
            keys = on_conflict.split(",")
            rows = self._rows_like(what, table, row, keys)
            settled = [r for r in rows if all(_same(r.get(k), row[k]) for k in (keys if ignore_duplicates else row))]
            if not settled:
                found = json.dumps(rows, sort_keys=True, default=str)[:1500] if rows else \
                    f"no row with {', '.join(f'{k}={row[k]}' for k in keys)}"
                raise CloudRejected(f"{exc}; the cloud has: {found}", reason="conflict") from exc
            log.warning("%s: %s; the cloud already has this row, so it is taken as written", what, exc)

    def _rows_like(self, what: str, table: str, row: dict[str, Any], keys: list[str]) -> list[dict[str, Any]]:
        """The rows a conflicting write may have met: on its conflict keys, and on its primary key `id`."""
        lookups = [keys] + ([["id"]] if "id" in row and keys != ["id"] else [])
        found: dict[str, dict[str, Any]] = {}
        for columns in lookups:
            def query(columns: list[str] = columns) -> Any:
                builder = self.supabase.table(table).select("*")
                for column in columns:
                    builder = builder.eq(column, row[column])
                return builder.execute()

            for item in self._call(f"{what}: read the conflicting row", query).data:
                found[json.dumps(item, sort_keys=True, default=str)] = item
        return list(found.values())

    def object_info(self, bucket: str, path: str) -> dict[str, Any] | None:
        """Storage's info on an object (size, version ...; src/storage/renderer/info.ts), None when it does not exist
        (NoSuchKey: HTTP 400 with statusCode 404 and error not_found)."""
        response = self.http.get(f"{self.url}/storage/v1/object/info/{bucket}/{path}", headers=self._auth)
        if response.is_success:
            return response.json()
        status, code, _ = storage_code(response.status_code, response.content)
        if status == 404 and code in ("not_found", "NoSuchKey"):
            return None
        raise classify_storage_answer(response.status_code, response.content, f"object info {bucket}/{path}")

    def probe_storage(self, bucket: str) -> None:
        """An authenticated Storage request whose error has a body (a HEAD's cannot): raises what it says."""
        response = self.http.get(f"{self.url}/storage/v1/bucket/{bucket}", headers=self._auth)
        if response.is_error:
            raise classify_storage_answer(response.status_code, response.content, f"Storage bucket {bucket}")

    # ---- bookings ------------------------------------------------------------------------------------

    def insert_booking(self, row: dict[str, Any]) -> None:
        """A retried insert must not touch a row that exists (its status may have moved on): ignore duplicates."""
        self._upsert("insert booking", "bookings", row, "id", ignore_duplicates=True)

    def advance_booking_status(self, booking_id: str, status: BookingStatus, reason: str | None = None) -> None:
        """Conditional: only rows still behind `status` change, so a late `completed` never undoes `video_uploaded`
        (the bookings trigger enforces the same in SQL, and clears status_reason for any status but `missed`)."""
        behind = [s.value for s in BookingStatus if s.rank < status.rank]
        values = {"status": status.value}
        if status == BookingStatus.missed:
            values["status_reason"] = reason
        self._call("advance booking status", lambda: self.supabase.table("bookings").update(
            values, returning=ReturnMethod.minimal).eq("id", booking_id).in_("status", behind).execute())

    def update_booking_times(self, booking_id: str, start: datetime, end: datetime) -> None:
        self._call("move booking", lambda: self.supabase.table("bookings").update(
            {"start_time": iso(start), "end_time": iso(end)}, returning=ReturnMethod.minimal).eq(
            "id", booking_id).eq("status", BookingStatus.confirmed.value).execute())

    def delete_booking(self, booking_id: str) -> None:
        self._call("delete booking", lambda: self.supabase.table("bookings").delete(
            returning=ReturnMethod.minimal).eq("id", booking_id).execute())

    def _paged(self, what: str, query: Callable[[], Any], page_size: int) -> list[dict[str, Any]]:
        """Every row of a select, page by page until an empty page: PostgREST caps a result at db-max-rows without
        saying so (200, Content-Range lower-upper/*; Plan.hs treeRestrictRange), so a short page proves nothing.
        `query` must order rows totally, or pages could skip or repeat rows."""
        rows: list[dict[str, Any]] = []
        while True:
            start = len(rows)
            page = self._call(what, lambda start=start: query().limit(page_size).offset(start).execute()).data
            if not page:
                return rows
            rows.extend(page)

    def fetch_bookings(self, camera_id: str, ends_after: datetime, page_size: int) -> list[dict[str, Any]]:
        return self._paged("fetch bookings", lambda: self.supabase.table("bookings").select("*").eq(
            "camera_id", camera_id).gt("end_time", iso(ends_after)).order("start_time").order("id"), page_size)

    def fetch_booking_statuses(self, booking_ids: list[str], page_size: int = 100) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(booking_ids), page_size):
            ids = booking_ids[i:i + page_size]
            rows = self._paged("fetch booking statuses", lambda ids=ids: self.supabase.table("bookings").select(
                "id,status").in_("id", ids).order("id"), page_size)
            found.update({r["id"]: r["status"] for r in rows})
        return found

    # ---- videos, status, settings ------------------------------------------------------------------

    def upsert_video(self, row: dict[str, Any]) -> None:
        """On the primary key: ids are deterministic (one per booking's video, one per highlight), and since the
        highlights migration `booking_id` alone is unique only among full videos (a partial index, which
        PostgREST's on_conflict cannot name)."""
        self._upsert("upsert video", "videos", row, "id")

    def put_system_status(self, row: dict[str, Any]) -> None:
        self._upsert("upsert system status", "system_status", row, "camera_id")
        self._upsert("insert status history", "system_status_history", row, "camera_id,collected_at",
                     ignore_duplicates=True)

    def upsert_user_settings(self, row: dict[str, Any]) -> None:
        self._upsert("upsert user settings", "user_settings", row, "user_id")

    def fetch_user_settings(self, user_id: str) -> dict[str, Any] | None:
        response = self._call("fetch user settings", lambda: self.supabase.table("user_settings").select(
            "*").eq("user_id", user_id).execute())
        return response.data[0] if response.data else None

    # ---- objects -------------------------------------------------------------------------------------

    def upload(self, bucket: str, path: str, src: Path, content_type: str, *, resume_key: str,
               progress: Callable[[int, int], None] | None = None) -> None:
        """Upsert, so a retry after a lost response replaces the object instead of failing with a conflict.
        A size or type the bucket refuses is refused with what it takes, for the operator's alert."""
        size = spliced_file.size(src)
        try:
            if size > STANDARD_UPLOAD_MAX:
                self._call("resumable upload", lambda: self.tus.upload(
                    resume_key, bucket, path, src, content_type, CACHE_CONTROL, progress=progress))
                return
            with spliced_file.open_read(src) as fh:
                self._call("upload", lambda: self.supabase.storage.from_(bucket).upload(
                    path, fh, {"content-type": content_type, "cache-control": CACHE_CONTROL, "upsert": "true"}))
        except CloudRejected as exc:
            if exc.reason == "too_large":
                raise CloudRejected(f"{bucket}/{path} is {_mb(size)}, {self._over_limit(bucket)}, then replay the"
                                    f" upload ({exc})", reason="too_large") from exc
            if exc.reason == "mime_type":
                allowed = self._bucket_field(bucket, "allowed_mime_types")
                takes = ", ".join(allowed) if isinstance(allowed, list) else "(could not read its list)"
                raise CloudRejected(f"{bucket}/{path} is {content_type}; the {bucket} bucket takes {takes} ({exc})",
                                    reason="mime_type") from exc
            raise

    def _bucket_field(self, bucket: str, name: str) -> Any:
        """A field of the bucket's row (src/http/routes/bucket/getBucket.ts), None when it cannot be read."""
        try:
            response = self.http.get(f"{self.url}/storage/v1/bucket/{bucket}", headers=self._auth)
            return response.json().get(name) if response.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    def _project_limit(self) -> int | None:
        """The project-wide upload limit: the resumable endpoint's OPTIONS says it in Tus-Max-Size (@tus/server
        OptionsHandler with supabase/storage's maxSize(req, null) = getFileSizeLimit(tenant))."""
        try:
            response = self.http.options(self.tus.endpoint, headers={"Tus-Resumable": "1.0.0"})
            return int(response.headers["Tus-Max-Size"])
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def _over_limit(self, bucket: str) -> str:
        """Which limit a 413 met, as supabase/storage picks it (src/http/routes/tus/index.ts maxSize): the bucket's
        file_size_limit when it has one, never above the project's."""
        own, project = self._bucket_field(bucket, "file_size_limit"), self._project_limit()
        if own and (project is None or own <= project):
            return f"over the {bucket} bucket's limit of {_mb(own)}: raise the bucket's file_size_limit"
        where = f"the {bucket} bucket has none of its own" if not own else f"the {bucket} bucket's own is {_mb(own)}"
        if project is None:
            return f"over the project's upload limit (it did not say how much; {where}): raise it"
        return (f"over the project's upload limit of {_mb(project)} ({where}): raise it (hosted: the project's "
                f"Storage settings; self-hosted: the storage service's FILE_SIZE_LIMIT)")

    def download(self, bucket: str, path: str, dest: Path) -> int:
        """Streamed to disk (intros can be large); the byte count is checked against Content-Length."""
        url = f"{self.url}/storage/v1/object/{bucket}/{path}"

        def fetch() -> int:
            with self.http.stream("GET", url, headers=self._auth) as response:
                if response.is_error:
                    response.read()
                    status, code, _ = storage_code(response.status_code, response.content)
                    if status == 404 and code in (None, "NoSuchKey", "not_found"):
                        raise NotFound(f"{bucket}/{path}")
                    raise classify_storage_answer(response.status_code, response.content, f"download {bucket}/{path}")
                expected = response.headers.get("content-length")
                size = 0
                with atomic_path(dest) as tmp, open(tmp, "wb") as out:
                    for chunk in response.iter_bytes(1024 * 1024):
                        out.write(chunk)
                        size += len(chunk)
                    if expected is not None and int(expected) != size:
                        raise CloudUnavailable(f"download {bucket}/{path}: got {size} of {expected} bytes")
                return size

        return self._call("download", fetch)

    def sign_url(self, bucket: str, path: str, expires_in_s: int, download: str | None = None) -> str:
        """A URL at which Storage serves the object for `expires_in_s` seconds to anyone holding it
        (POST /object/sign/<bucket>/<path>: src/http/routes/object/getSignedURL.ts; NotFound when the object is not
        there). `download`: served as an attachment with this file name."""
        options = {"download": download} if download else None

        def sign() -> str:
            try:
                answer = self.supabase.storage.from_(bucket).create_signed_url(path, expires_in_s, options)
            except StorageApiError as exc:
                if str(exc.status) == "404" and exc.code in ("NoSuchKey", "not_found"):
                    raise NotFound(f"{bucket}/{path} is not in the cloud") from exc
                raise
            url = answer.get("signedURL") or answer.get("signedUrl")
            if not url:
                raise CloudUnavailable(f"sign {bucket}/{path}: Storage answered no signedURL")
            return str(url)

        return self._call(f"sign {bucket}/{path}", sign)

    def remove(self, bucket: str, path: str) -> None:
        self._call("remove object", lambda: self.supabase.storage.from_(bucket).remove([path]))

    def exists(self, bucket: str, path: str) -> bool:
        return bool(self._call("object exists", lambda: self.supabase.storage.from_(bucket).exists(path)))
