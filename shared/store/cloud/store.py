"""SupabaseStore: the Store interface, offline first.

Reads come from the local mirror (a LocalStore in DATA_DIR), so the services keep recording and
processing while the court's internet is down. Every write lands in the mirror and, in the same call,
in the durable cloud outbox (DATA_DIR/state/cloud-outbox.sqlite3); a background drainer applies the
outbox to Supabase in order per booking, with backoff while the cloud is away.

What "confirmed" means for put_object: the object is in the mirror (fsynced, renamed into place) and its
upload is queued durably. The mirror copy is the store's own and is removed only by an explicit
delete_object (itself queued behind the upload) or, for a video, by the recorder's disk guard once the
cloud has confirmed the upload (reclaimable_files / reclaim_file); so a caller may delete its source file
as soon as put_object + upsert_video return, and the cloud still gets the bytes, the row and the status,
in that order (the status op is queued after both under the same booking key). The field notes' failure
(row written, upload lost, only copy deleted) cannot happen: nothing reaches the cloud out of that order
and no copy is deleted before the cloud has it.

Share links stay device-local (they are signed with the device's API token and served by its API).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from shared import spliced_file
from shared.models import (
    Booking,
    BookingIn,
    BookingStatus,
    ObjectInfo,
    ShareLink,
    SystemStatusRow,
    UserSettings,
    Video,
    VideoKind,
    storage_path_for_video,
)
from shared.payloads import CloudProblem
from shared.schedule_cache import KEEP_PAST
from shared.settings import Settings
from shared.store.base import BookingConflict, NotFound, Store, StoreError, check_object_path, verify_media
from shared.store.cloud.drain import Drainer
from shared.store.cloud.errors import CloudRejected, CloudUnavailable
from shared.store.cloud.outbox import CloudOp, CloudOutbox, holds_after_refusal
from shared.store.cloud.rows import (
    booking_from_row,
    booking_row,
    iso,
    settings_from_row,
    settings_row,
    status_row,
    video_row,
)
from shared.store.local import LocalStore
from shared.timeutil import utc_now

if TYPE_CHECKING:
    from shared.store.cloud.client import CloudClient
    from shared.store.cloud.operator import OutboxOperator

log = logging.getLogger(__name__)
T = TypeVar("T")

PULL_PAGE = 1000
"""Rows asked for per page when pulling bookings (a project's db-max-rows may cut a page shorter)."""
MIRROR_LOCK_WAIT_S = 2.0
"""How long the disk guard (in the recorder's frame loop) waits for a put_object in progress."""


REFUSALS_LISTED = 20
"""Refused writes reported one by one; any beyond are counted in one more problem."""


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _clip(message: str, limit: int = 600) -> str:
    return message if len(message) <= limit else message[:limit - 3] + "..."


def _describe(op: CloudOp) -> str:
    p = op.payload
    if op.kind == "object_put":
        return f"the upload of {p.get('bucket')}/{p.get('path')}"
    if op.kind == "object_delete":
        return f"the removal of {p.get('bucket')}/{p.get('path')}"
    return f"{op.kind.replace('_', ' ')} of {op.key}"


def highlight_key(booking_id: str) -> str:
    """A booking's highlights are ordered among themselves, apart from its full video: a highlight write the cloud
    refuses holds back only the booking's other highlights, never its video."""
    return f"highlight:{booking_id}"


def object_key(bucket: str, path: str) -> str:
    """The ordering key of an object: its booking (videos) or its user (media)."""
    parts = path.split("/")
    if bucket == "videos" and len(parts) == 2 and parts[1].endswith(".mp4"):
        return parts[1].removesuffix(".mp4")
    if bucket == "videos" and len(parts) == 4 and parts[1] == "highlights":
        return highlight_key(parts[2])
    if bucket == "media" and len(parts) >= 3 and parts[1] == "media":
        return f"user:{parts[0]}"
    return f"object:{bucket}/{path}"


def _flock(fd: int, wait_s: float | None) -> bool:
    if wait_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


@contextmanager
def exclusive(lock_file: Path, wait_s: float | None = None) -> Iterator[bool]:
    """An flock shared by every process on DATA_DIR (and every thread: each call opens its own descriptor).
    Yields False when not taken within wait_s (None: waits as long as it takes)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield _flock(fd, wait_s)
    finally:
        os.close(fd)


class SupabaseStore(Store):
    def __init__(self, settings: Settings, *, local: LocalStore | None = None) -> None:
        if not settings.supabase_url or settings.supabase_service_role_key is None:
            raise StoreError("SupabaseStore needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.local = local or LocalStore(settings.data_dir)
        self.outbox = CloudOutbox(settings.state_dir / "cloud-outbox.sqlite3")
        self.mirror_lock = settings.state_dir / "mirror.lock"
        self._cloud: CloudClient | None = None
        self._cloud_lock = threading.Lock()
        self.drainer = Drainer(self.outbox, self._apply, retry_min_s=settings.supabase_retry_min_s,
                               retry_max_s=settings.supabase_retry_max_s)
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------------------

    @property
    def cloud(self) -> CloudClient:
        """Made on first use: importing the supabase client costs ~20 MB, which the processes that only write
        to the outbox (the recorder, the status service) never need to pay."""
        with self._cloud_lock:
            if self._cloud is None:
                from shared.store.cloud.client import CloudClient

                key = self.settings.supabase_service_role_key
                assert self.settings.supabase_url and key is not None  # checked in __init__
                self._cloud = CloudClient(self.settings.supabase_url, key.get_secret_value(),
                                          timeout_s=self.settings.supabase_storage_timeout_s, tus_state=self.outbox.tus)
            return self._cloud

    def start(self) -> None:
        self.drainer.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.drainer.stop()
        if self._cloud is not None:
            self._cloud.close()
        self.outbox.close()
        self.local.close()

    def sync_now(self) -> int:
        """One drain pass in the calling thread (tests, `ezrec` tooling)."""
        return self.drainer.drain_once()

    def _queue(self, kind: str, key: str, payload: dict) -> None:
        self.outbox.add(kind, key, payload)
        self.drainer.wake.set()

    # ---- applying the outbox ---------------------------------------------------------------------------

    def _observed(self, service: str, call: Callable[[], T], *, write: bool) -> T:
        """A cloud call whose configuration faults (a key not accepted, a read-only database, a missing schema) are
        noted in the outbox file for the status service's alerts, and cleared by the next success: any success
        proves the key, only a write proves the database takes writes."""
        try:
            result = call()
        except CloudUnavailable as exc:
            if exc.fault is not None:
                self.outbox.note_fault(f"{exc.service or service}:{exc.fault}", str(exc))
            raise
        self.outbox.clear_faults(service, None if write else ("auth",))
        return result

    def _apply(self, op: CloudOp) -> None:
        service = "storage" if op.kind in ("object_put", "object_delete") else "rest"
        self._observed(service, lambda: self._apply_op(op), write=True)

    def _apply_op(self, op: CloudOp) -> None:
        p = op.payload
        if op.kind == "booking_insert":
            self.cloud.insert_booking(p["row"])
            self.outbox.mark_seen([p["row"]["id"]])
        elif op.kind == "booking_status":
            self.cloud.advance_booking_status(p["id"], BookingStatus(p["status"]), p.get("reason"))
        elif op.kind == "booking_times":
            self.cloud.update_booking_times(p["id"], datetime.fromisoformat(p["start"]),
                                            datetime.fromisoformat(p["end"]))
        elif op.kind == "booking_delete":
            self.cloud.delete_booking(p["id"])
            self.outbox.forget_seen(p["id"])
        elif op.kind == "video_upsert":
            self.cloud.upsert_video(p["row"])
        elif op.kind == "system_status":
            self.cloud.put_system_status(p["row"])
        elif op.kind == "user_settings":
            self.cloud.upsert_user_settings(p["row"])
        elif op.kind == "object_put":
            src = self.local.local_object_path(p["bucket"], p["path"])
            if src is None:  # deleted (or replaced by a later put) since: the later operation decides
                log.info("object %s/%s is gone from the mirror; nothing to upload", p["bucket"], p["path"])
                return
            self.cloud.upload(p["bucket"], p["path"], src, p["content_type"], resume_key=f"op{op.id}",
                              progress=lambda _done, _total: self.drainer.renew())
        elif op.kind == "object_delete":
            self.cloud.remove(p["bucket"], p["path"])
        else:
            raise CloudRejected(f"unknown outbox operation {op.kind!r}")

    # ---- bookings --------------------------------------------------------------------------------------

    def create_bookings(self, items: list[BookingIn], default_camera_id: str) -> list[tuple[Booking, bool]]:
        results = self.local.create_bookings(items, default_camera_id)
        for booking, created in results:
            if created:
                self._queue("booking_insert", booking.id, {"row": booking_row(booking)})
        return results

    def get_booking(self, booking_id: str) -> Booking | None:
        return self.local.get_booking(booking_id)

    def list_bookings(self, *, camera_id: str | None = None, user_id: str | None = None,
                      status: BookingStatus | None = None, ends_after: datetime | None = None,
                      starts_before: datetime | None = None) -> list[Booking]:
        return self.local.list_bookings(camera_id=camera_id, user_id=user_id, status=status,
                                        ends_after=ends_after, starts_before=starts_before)

    def advance_booking_status(self, booking_id: str, status: BookingStatus,
                               reason: str | None = None) -> Booking | None:
        before = self.local.get_booking(booking_id)
        after = self.local.advance_booking_status(booking_id, status, reason)
        if before is not None and after is not None and after.status != before.status:
            self._queue("booking_status", booking_id, _status_op(after))
        return after

    def delete_booking(self, booking_id: str) -> bool:
        deleted = self.local.delete_booking(booking_id)
        if deleted:
            self._queue("booking_delete", booking_id, {"id": booking_id})
        return deleted

    def update_booking_times(self, booking_id: str, start_time: datetime, end_time: datetime) -> Booking:
        booking = self.local.update_booking_times(booking_id, start_time, end_time)
        self._queue("booking_times", booking_id,
                    {"id": booking_id, "start": iso(booking.start_time), "end": iso(booking.end_time)})
        return booking

    # ---- videos ----------------------------------------------------------------------------------------

    def upsert_video(self, video: Video) -> Video:
        stored = self.local.upsert_video(video)
        key = stored.booking_id if stored.kind == "full" else highlight_key(stored.booking_id)
        self._queue("video_upsert", key, {"row": video_row(stored)})
        return stored

    def get_video(self, video_id: str) -> Video | None:
        return self.local.get_video(video_id)

    def list_videos(self, *, booking_id: str | None = None, user_id: str | None = None,
                    kind: VideoKind | None = None) -> list[Video]:
        return self.local.list_videos(booking_id=booking_id, user_id=user_id, kind=kind)

    # ---- share links (device-local) --------------------------------------------------------------------

    def create_share_link(self, link: ShareLink) -> ShareLink:
        return self.local.create_share_link(link)

    def get_share_link(self, link_id: str) -> ShareLink | None:
        return self.local.get_share_link(link_id)

    def list_share_links(self, video_id: str) -> list[ShareLink]:
        return self.local.list_share_links(video_id)

    def revoke_share_links(self, video_id: str, link_id: str | None = None) -> int:
        return self.local.revoke_share_links(video_id, link_id)

    # ---- system status ---------------------------------------------------------------------------------

    def put_system_status(self, row: SystemStatusRow) -> None:
        self.local.put_system_status(row)
        self._queue("system_status", f"status:{row.camera_id}", {"row": status_row(row)})

    def get_system_status(self, camera_id: str) -> SystemStatusRow | None:
        return self.local.get_system_status(camera_id)

    def list_system_status(self, camera_id: str, since: datetime) -> list[SystemStatusRow]:
        return self.local.list_system_status(camera_id, since)

    # ---- user settings: the cloud is where users edit them; the mirror answers when it is away ----------

    def get_user_settings(self, user_id: str) -> UserSettings | None:
        if self.drainer.cloud_reachable and not self.outbox.has_pending(f"user:{user_id}"):
            try:
                row = self._observed("rest", lambda: self.cloud.fetch_user_settings(user_id), write=False)
            except CloudUnavailable as exc:
                self.drainer.note_unavailable()
                log.info("user settings of %s from the mirror: %s", user_id, exc)
            except CloudRejected as exc:
                log.warning("user settings of %s from the mirror: %s", user_id, exc)
            else:
                if row is not None:
                    self._mirror_settings(settings_from_row(row))
        return self.local.get_user_settings(user_id)

    def _mirror_settings(self, fresh: UserSettings) -> bool:
        current = self.local.get_user_settings(fresh.user_id)
        if current is not None and settings_row(current) == settings_row(fresh):
            return False
        self.local.put_user_settings(fresh)
        return True

    def put_user_settings(self, settings: UserSettings) -> UserSettings:
        stored = self.local.put_user_settings(settings)
        self._queue("user_settings", f"user:{stored.user_id}", {"row": settings_row(stored)})
        return stored

    def refresh_user_media(self, user_id: str) -> bool:
        """Pull the user's settings from the cloud and fetch every media file they name into the mirror,
        so an offline worker still has them. True when the settings changed."""
        before = self.local.get_user_settings(user_id)
        after = self.get_user_settings(user_id)
        if after is None:
            return False
        for path in [p for p in [after.intro_video_path, after.logo_path, *after.sponsor_logo_paths] if p]:
            try:
                self._cached_object("media", path)
            except (StoreError, OSError, ValueError) as exc:
                log.warning("media %s of %s not cached: %s", path, user_id, exc)
        return before is None or settings_row(before) != settings_row(after)

    # ---- objects ---------------------------------------------------------------------------------------

    def put_object(self, bucket: str, path: str, src: Path, content_type: str) -> ObjectInfo:
        # Under the mirror lock: reclaim_file must never find new bytes in the mirror before their upload is queued.
        with exclusive(self.mirror_lock):
            info = self.local.put_object(bucket, path, src, content_type)
            self._queue("object_put", object_key(bucket, path),
                        {"bucket": bucket, "path": path, "content_type": content_type, "size": info.size_bytes})
        return info

    def _cached_object(self, bucket: str, path: str) -> Path:
        """The mirror's verified copy, downloaded from the cloud when missing or damaged."""
        check_object_path(bucket, path)
        mirror = self.local.files_dir / bucket / path
        if mirror.is_file() and (bucket != "media" or verify_media(path, mirror)):
            return mirror
        if mirror.exists():
            log.warning("cached %s/%s failed verification; downloading again", bucket, path)
            mirror.unlink()
        if not self.drainer.cloud_reachable:
            raise CloudUnavailable(f"{bucket}/{path} is not on this device and the cloud is unreachable")
        try:
            self._observed("storage", lambda: self.cloud.download(bucket, path, mirror), write=False)
        except CloudUnavailable:
            self.drainer.note_unavailable()
            raise
        if bucket == "media" and not verify_media(path, mirror):
            mirror.unlink(missing_ok=True)
            raise CloudRejected(f"{bucket}/{path}: downloaded content does not match its name's hash")
        return mirror

    def get_object(self, bucket: str, path: str, dest: Path) -> Path:
        self._cached_object(bucket, path)
        return self.local.get_object(bucket, path, dest)

    def object_exists(self, bucket: str, path: str) -> bool:
        if self.local.object_exists(bucket, path):
            return True
        if not self.drainer.cloud_reachable:
            return False
        try:
            return self.cloud.exists(bucket, path)
        except CloudUnavailable:
            self.drainer.note_unavailable()
            return False

    def delete_object(self, bucket: str, path: str) -> None:
        self.local.delete_object(bucket, path)
        self._queue("object_delete", object_key(bucket, path), {"bucket": bucket, "path": path})

    def local_object_path(self, bucket: str, path: str) -> Path | None:
        return self.local.local_object_path(bucket, path)

    def signed_url(self, bucket: str, path: str, expires_in_s: int, download: str | None = None) -> str:
        """Raises CloudUnavailable while the cloud is unreachable (without asking it during the drainer's backoff),
        NotFound when the cloud has no such object."""
        check_object_path(bucket, path)
        if not self.drainer.cloud_reachable:
            raise CloudUnavailable(f"{bucket}/{path}: the cloud is unreachable (retrying)")
        try:
            return self._observed("storage", lambda: self.cloud.sign_url(bucket, path, expires_in_s, download),
                                  write=False)
        except CloudUnavailable:
            self.drainer.note_unavailable()
            raise

    def object_content_type(self, bucket: str, path: str) -> str | None:
        return self.local.object_content_type(bucket, path)

    # ---- what an operator must act on (the status service's alerts, /outbox) ------------------------------

    def cloud_outbox(self) -> OutboxOperator:
        from shared.store.cloud.operator import OutboxOperator

        return OutboxOperator(self)

    def cloud_problems(self) -> list[CloudProblem]:
        """One problem per refused write that holds its key (each names the write, the reason and the operation to
        replay), one per key of refused status rows, one per fault the drainer keeps retrying through."""
        problems: list[CloudProblem] = []
        grouped: dict[str, list[tuple[CloudOp, str, float]]] = {}
        for op, error, failed_at in self.outbox.refusals(REFUSALS_LISTED):
            if not holds_after_refusal(op.key):
                grouped.setdefault(op.key, []).append((op, error, failed_at))
                continue
            problems.append(CloudProblem(
                id=f"cloud_refused:{op.id}", kind="cloud_refused", key=op.key, since=_utc(failed_at),
                message=_clip(f"the cloud refused {_describe(op)}; the later writes of {op.key} wait. {error}. "
                              f"Fix the cause, then replay outbox operation {op.id} (`ezrec outbox replay {op.id}`, "
                              "or the dashboard)")))
        for key, refused in grouped.items():
            op, error, failed_at = refused[-1]
            problems.append(CloudProblem(
                id=f"cloud_refused:{key}", kind="cloud_refused", key=key, since=_utc(refused[0][2]),
                message=_clip(f"the cloud refused {len(refused)} {op.kind} write(s) of {key}, the last: {error}")))
        missing = self.outbox.refused_count() - REFUSALS_LISTED
        if missing > 0:
            problems.append(CloudProblem(id="cloud_refused:more", kind="cloud_refused", since=utc_now(),
                                         message=f"{missing} more refused cloud write(s) in the outbox"))
        for fault in self.outbox.faults():
            problems.append(CloudProblem(id=f"cloud_fault:{fault.name}", kind="cloud_fault", since=_utc(fault.since),
                                         message=_clip(f"cloud writes wait: {fault.message}")))
        return problems

    # ---- mirror copies the disk guard may free -----------------------------------------------------------

    def _unsent_videos(self) -> set[str]:
        """Video paths with an upload still in the outbox: pending, or refused and kept for a human."""
        return {op.payload["path"] for op in self.outbox.kept(("object_put",)) if op.payload.get("bucket") == "videos"}

    def _upload_confirmed(self, path: str, unsent: set[str]) -> bool:
        """The cloud has the mirror's videos/<path>: its booking is `video_uploaded` here (the worker sets that
        only after put_object returned, so the upload was queued) and that upload has left the outbox
        (applied operations are deleted; pending and refused ones stay)."""
        try:
            check_object_path("videos", path)
        except ValueError:
            return False
        booking = self.local.get_booking(Path(path).stem)
        return (booking is not None and booking.status == BookingStatus.video_uploaded
                and storage_path_for_video(booking.user_id, booking.id) == path and path not in unsent)

    def _kept_videos(self) -> set[str]:
        """Video paths whose mirror copy must stay: an upload still in the outbox, or one an operator dropped (the
        cloud will never have it, so the mirror holds the only copy)."""
        return self._unsent_videos() | self.outbox.dropped_video_paths()

    def videos_waiting_for_upload(self) -> int:
        return len(self._unsent_videos())

    def reclaimable_files(self) -> list[Path]:
        """Mirror copies of videos whose upload the cloud confirmed, oldest first: without this, a cloud-backed
        device keeps every video it ever made until the disk fills and the recorder stops."""
        root = self.local.files_dir / "videos"
        if not root.is_dir():
            return []
        unsent = self._kept_videos()
        found: list[tuple[float, Path]] = []
        for file in root.glob("*/*.mp4"):
            if not self._upload_confirmed(file.relative_to(root).as_posix(), unsent):
                continue
            try:
                found.append((file.stat().st_mtime, file))
            except OSError:
                continue
        return [file for _, file in sorted(found)]

    def reclaim_file(self, file: Path) -> bool:
        """Checked again under the mirror lock, since a new upload of the same video may have been queued after
        the listing. Only the file goes: the object's row stays (the object still exists, in the cloud)."""
        root = self.local.files_dir / "videos"
        if not file.is_relative_to(root):
            return False
        relative = file.relative_to(root).as_posix()
        if not self._upload_confirmed(relative, self._kept_videos()):
            return False
        self._keep_thumbnail(file)  # before the lock: a decode must not hold up put_object in other processes
        with exclusive(self.mirror_lock, MIRROR_LOCK_WAIT_S) as taken:
            if not taken or not self._upload_confirmed(relative, self._kept_videos()):
                return False
            if not spliced_file.exists(file):
                return False
            spliced_file.remove(file)
        log.info("mirror copy of videos/%s removed to free disk space (the cloud has it)", file.relative_to(root))
        return True

    def _keep_thumbnail(self, file: Path) -> None:
        """The dashboard's thumbnail, made now if the API has not made it yet: it stays when the video's copy goes.
        A failure costs the thumbnail (the API can still make one from the cloud copy), never the freed space."""
        from shared.thumbnails import ThumbnailCache, ThumbnailError, thumbnail_dir

        cache = ThumbnailCache(thumbnail_dir(self.settings.data_dir))
        relative = file.relative_to(self.local.files_dir / "videos").as_posix()
        for video in self.local.list_videos(booking_id=file.stem):
            if video.storage_path != relative:
                continue
            try:
                cache.get(video.id, file)
            except (ThumbnailError, OSError) as exc:
                log.warning("no thumbnail kept for video %s before its copy is freed: %s", video.id, exc)

    # ---- bookings made in the cloud ----------------------------------------------------------------------

    def pull_bookings(self, camera_id: str) -> bool:
        """Mirror the cloud's bookings for this camera (new, moved, deleted, status ahead); push back what
        the cloud lacks. True when the local schedule changed. Raises CloudUnavailable when offline."""
        now = utc_now()
        window = now - KEEP_PAST
        mark = self.outbox.mark()
        busy = {op.key for op in self.outbox.pending(10_000)}
        try:
            rows = self._observed("rest", lambda: self.cloud.fetch_bookings(camera_id, window, PULL_PAGE), write=False)
        except CloudUnavailable:
            self.drainer.note_unavailable()
            raise
        busy |= self.outbox.touched_since(mark)  # changed here during the fetch: its rows are older than that
        cloud = {b.id: b for b in map(booking_from_row, rows)}
        self.outbox.mark_seen(list(cloud))
        changed = False
        for booking in cloud.values():
            if booking.id in busy or self.outbox.has_pending(booking.id):
                continue  # the device has newer intent for it, queued
            changed |= self._take_from_cloud(booking)
        gone: list[Booking] = []
        for local in self.local.list_bookings(camera_id=camera_id, ends_after=window):
            if local.id in cloud or local.id in busy or self.outbox.has_pending(local.id):
                continue
            if self.outbox.was_seen(local.id):
                if local.status == BookingStatus.confirmed and local.start_time > now:
                    gone.append(local)
            else:  # made here, its insert lost before it was queued (crash): queue it again
                self._queue("booking_insert", local.id, {"row": booking_row(local.model_copy(
                    update={"status": BookingStatus.confirmed}))})
                if local.status != BookingStatus.confirmed:
                    self._queue("booking_status", local.id, _status_op(local))
        if gone:
            changed |= self._drop_deleted(gone)
        return changed

    def _drop_deleted(self, missing: list[Booking]) -> bool:
        """Bookings seen in the cloud and missing from this pull: asked for by id before they are removed here, since
        a row that moved between two pages (or a result cap) must not cost a booking."""
        try:
            still = self._observed("rest", lambda: self.cloud.fetch_booking_statuses([b.id for b in missing]),
                                   write=False)
        except CloudUnavailable:
            self.drainer.note_unavailable()
            raise
        changed = False
        for local in missing:
            if local.id in still:
                log.warning("booking %s was missing from the pulled pages but is in the cloud; kept", local.id)
                continue
            log.info("booking %s was deleted in the cloud; removing it here", local.id)
            self.local.delete_booking(local.id)
            self.outbox.forget_seen(local.id)
            changed = True
        return changed

    def _take_from_cloud(self, booking: Booking) -> bool:
        local = self.local.get_booking(booking.id)
        if local is None:
            try:
                self.local.create_bookings([BookingIn(id=booking.id, user_id=booking.user_id,
                                                      camera_id=booking.camera_id, start_time=booking.start_time,
                                                      end_time=booking.end_time)], booking.camera_id)
            except BookingConflict as exc:
                log.error("cloud booking %s not taken: %s", booking.id, exc)
                return False
            if booking.status != BookingStatus.confirmed:
                self.local.advance_booking_status(booking.id, booking.status, booking.status_reason)
            log.info("booking %s arrived from the cloud", booking.id)
            return True
        changed = False
        if local.status.can_advance_to(booking.status):
            self.local.advance_booking_status(booking.id, booking.status, booking.status_reason)
            changed = True
        elif booking.status.can_advance_to(local.status):  # a status update lost before it was queued
            self._queue("booking_status", local.id, _status_op(local))
        if (local.start_time, local.end_time) != (booking.start_time, booking.end_time) \
                and local.status == booking.status == BookingStatus.confirmed:
            try:
                self.local.update_booking_times(booking.id, booking.start_time, booking.end_time)
                changed = True
            except (BookingConflict, NotFound) as exc:
                log.error("cloud move of booking %s not taken: %s", booking.id, exc)
        return changed


def _status_op(booking: Booking) -> dict:
    """A booking_status outbox operation; `reason` travels with `missed` only (older ops have none)."""
    op = {"id": booking.id, "status": booking.status.value}
    if booking.status_reason:
        op["reason"] = booking.status_reason
    return op
