"""Domain records <-> the JSON rows of the Supabase tables (supabase/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.models import Booking, BookingStatus, SystemStatusRow, UserSettings, Video


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def booking_row(booking: Booking) -> dict[str, Any]:
    """created_at / updated_at are the database's (defaults and trigger)."""
    return {"id": booking.id, "user_id": booking.user_id, "camera_id": booking.camera_id,
            "start_time": iso(booking.start_time), "end_time": iso(booking.end_time),
            "status": booking.status.value}


def booking_from_row(row: dict[str, Any]) -> Booking:
    return Booking(id=row["id"], user_id=row["user_id"], camera_id=row["camera_id"],
                   start_time=row["start_time"], end_time=row["end_time"], status=BookingStatus(row["status"]),
                   status_reason=row.get("status_reason"),
                   created_at=row.get("created_at") or row["start_time"],
                   updated_at=row.get("updated_at") or row["start_time"])


def video_row(video: Video) -> dict[str, Any]:
    """`kind` is sent for highlights only: a full video's row stays writable to a project without the highlights
    migration (the column's default is `full`)."""
    row = {"id": video.id, "booking_id": video.booking_id, "user_id": video.user_id,
           "camera_id": video.camera_id, "storage_path": video.storage_path, "size_bytes": video.size_bytes,
           "duration_seconds": video.duration_seconds, "created_at": iso(video.created_at),
           "uploaded_at": iso(video.uploaded_at) if video.uploaded_at else None}
    if video.kind != "full":
        row["kind"] = video.kind
    return row


def status_row(row: SystemStatusRow) -> dict[str, Any]:
    return {"camera_id": row.camera_id, "collected_at": iso(row.collected_at), "snapshot": row.snapshot}


def settings_row(settings: UserSettings) -> dict[str, Any]:
    return {"user_id": settings.user_id, "intro_video_path": settings.intro_video_path,
            "logo_path": settings.logo_path, "sponsor_logo_paths": list(settings.sponsor_logo_paths),
            "logo_placement": settings.logo_placement.model_dump() if settings.logo_placement else None,
            "sponsor_logo_placements": [p.model_dump() if p else None for p in settings.sponsor_logo_placements]}


def settings_from_row(row: dict[str, Any]) -> UserSettings:
    """A row from before the placement migration has no placement columns: the defaults."""
    return UserSettings(user_id=row["user_id"], intro_video_path=row.get("intro_video_path"),
                        logo_path=row.get("logo_path"), sponsor_logo_paths=row.get("sponsor_logo_paths") or [],
                        logo_placement=row.get("logo_placement"),
                        sponsor_logo_placements=row.get("sponsor_logo_placements") or [],
                        updated_at=row.get("updated_at") or datetime.now(UTC))
