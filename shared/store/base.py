"""The Store interface: everything a service persists, whether on the device or in Supabase.

Method shapes follow what Supabase can do in one request each (upsert on a key, filtered
select, object upload/download), so SupabaseStore can implement them one to one.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

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
)
from shared.payloads import CloudProblem

if TYPE_CHECKING:
    from shared.store.cloud.operator import OutboxOperator

BUCKETS = ("videos", "media")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class StoreError(Exception):
    pass


class BookingConflict(StoreError):
    """Same id with a different body, or an overlap with another booking on the same camera."""

    def __init__(self, message: str, conflicting_id: str) -> None:
        super().__init__(message)
        self.conflicting_id = conflicting_id


class NotFound(StoreError):
    pass


_HASHED_NAME = re.compile(r"-(?P<sha>[0-9a-f]{16})\.[A-Za-z0-9]+$")


def verify_media(path: str, file: Path) -> bool:
    """Media names carry the first 16 hex digits of their sha256 (the API names them so): check them."""
    match = _HASHED_NAME.search(path)
    if not file.is_file() or file.stat().st_size == 0:
        return False
    if match is None:
        return True
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest().startswith(match["sha"])


def check_object_path(bucket: str, path: str) -> None:
    """Object paths come from ids and user input: refuse anything that could escape the bucket."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}")
    parts = path.split("/")
    if not parts or any(not _SEGMENT.match(p) or p in (".", "..") for p in parts):
        raise ValueError(f"invalid object path {path!r}")


class Store(ABC):
    # bookings
    @abstractmethod
    def create_bookings(self, items: list[BookingIn], default_camera_id: str) -> list[tuple[Booking, bool]]:
        """All or nothing. Returns (booking, created); an identical repeat is (existing, False)."""

    @abstractmethod
    def get_booking(self, booking_id: str) -> Booking | None: ...

    @abstractmethod
    def list_bookings(
        self,
        *,
        camera_id: str | None = None,
        user_id: str | None = None,
        status: BookingStatus | None = None,
        ends_after: datetime | None = None,
        starts_before: datetime | None = None,
    ) -> list[Booking]: ...

    @abstractmethod
    def advance_booking_status(self, booking_id: str, status: BookingStatus,
                               reason: str | None = None) -> Booking | None:
        """Move forward only; a stale or repeated update is a no-op. None if the booking is unknown.
        `reason` is kept with `missed` only (cut at STATUS_REASON_LIMIT); any other status clears it."""

    @abstractmethod
    def delete_booking(self, booking_id: str) -> bool: ...

    @abstractmethod
    def update_booking_times(self, booking_id: str, start_time: datetime, end_time: datetime) -> Booking:
        """Move a still-confirmed booking. Raises NotFound, or BookingConflict when it overlaps another
        booking on its camera or is no longer confirmed (conflicting_id is then its own id)."""

    # videos
    @abstractmethod
    def upsert_video(self, video: Video) -> Video:
        """A full video is keyed on booking_id, a highlight on its (deterministic) id, so a retry after a crash
        never makes a second row."""

    @abstractmethod
    def get_video(self, video_id: str) -> Video | None: ...

    @abstractmethod
    def list_videos(self, *, booking_id: str | None = None, user_id: str | None = None,
                    kind: VideoKind | None = None) -> list[Video]: ...

    # share links
    @abstractmethod
    def create_share_link(self, link: ShareLink) -> ShareLink: ...

    @abstractmethod
    def get_share_link(self, link_id: str) -> ShareLink | None: ...

    @abstractmethod
    def list_share_links(self, video_id: str) -> list[ShareLink]: ...

    @abstractmethod
    def revoke_share_links(self, video_id: str, link_id: str | None = None) -> int:
        """Mark one link (or every link of the video) revoked; returns how many were newly revoked."""

    # system status
    @abstractmethod
    def put_system_status(self, row: SystemStatusRow) -> None: ...

    @abstractmethod
    def get_system_status(self, camera_id: str) -> SystemStatusRow | None: ...

    @abstractmethod
    def list_system_status(self, camera_id: str, since: datetime) -> list[SystemStatusRow]: ...

    # user settings
    @abstractmethod
    def get_user_settings(self, user_id: str) -> UserSettings | None: ...

    @abstractmethod
    def put_user_settings(self, settings: UserSettings) -> UserSettings: ...

    # objects
    @abstractmethod
    def put_object(self, bucket: str, path: str, src: Path, content_type: str) -> ObjectInfo:
        """Idempotent (upsert): uploading the same path again replaces the object."""

    @abstractmethod
    def get_object(self, bucket: str, path: str, dest: Path) -> Path:
        """Download to dest (written atomically). Raises NotFound."""

    @abstractmethod
    def object_exists(self, bucket: str, path: str) -> bool: ...

    @abstractmethod
    def delete_object(self, bucket: str, path: str) -> None: ...

    def local_object_path(self, bucket: str, path: str) -> Path | None:
        """A file the API can serve directly (with Range), when the object lives on this device."""
        return None

    def videos_waiting_for_upload(self) -> int:
        """Videos put_object accepted that the storage does not hold yet (0 where put_object stores them itself):
        the status service adds them to `uploads_pending`, since the worker's own file is gone by then."""
        return 0

    def cloud_outbox(self) -> OutboxOperator | None:
        """The operator's view of the cloud outbox (list, show, replay, drop); None where there is no cloud."""
        return None

    def signed_url(self, bucket: str, path: str, expires_in_s: int, download: str | None = None) -> str | None:
        """A short-lived URL at which the cloud serves the object (`download`: as an attachment with this file name);
        None where there is no cloud. Raises NotFound when the cloud has no such object."""
        return None

    def cloud_problems(self) -> list[CloudProblem] | None:
        """Refused cloud writes and cloud faults an operator must act on (the status service raises an alert for
        each); None where there is no cloud."""
        return None

    # local copies the disk guard may free
    @abstractmethod
    def reclaimable_files(self) -> list[Path]:
        """Files this store keeps on the device only as copies of data held safely elsewhere, oldest first.

        The recorder's disk guard deletes them (through reclaim_file) before it would stop recording for
        lack of space; a file that is the only copy of anything must never be listed."""

    @abstractmethod
    def reclaim_file(self, file: Path) -> bool:
        """Delete one file listed by reclaimable_files, checking again first: it may have become the only
        copy since it was listed (a new upload of the same object). False when it was kept."""

    def change_token(self) -> object | None:
        """A value that differs whenever the data may have changed since it was last read by this thread;
        None when the store cannot tell (then callers must not cache reads)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
