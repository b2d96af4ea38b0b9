"""Domain records shared by the store, the API and the services."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from shared.timeutil import StrictUtcDatetime, UtcDatetime, utc_now

SAFE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SafeId = Annotated[str, StringConstraints(pattern=SAFE_ID_PATTERN)]
"""Ids become file and object names: the pattern keeps path characters out."""


class BookingStatus(StrEnum):
    """In order (a status only moves forward). `missed`: the slot passed and nothing was recorded (see
    docs/bookings.md); it sits before `completed`, so a recording that still turns up completes it."""

    confirmed = "confirmed"
    missed = "missed"
    completed = "completed"
    video_processed = "video_processed"
    video_uploaded = "video_uploaded"

    @property
    def rank(self) -> int:
        return _STATUS_ORDER.index(self)

    def can_advance_to(self, new: BookingStatus) -> bool:
        """Statuses only move forward, so a late or replayed event never undoes progress."""
        return new.rank > self.rank


_STATUS_ORDER = list(BookingStatus)
STATUS_REASON_LIMIT = 300


class BookingIn(BaseModel):
    """A booking as a client sends it."""

    model_config = ConfigDict(extra="forbid")

    id: SafeId
    user_id: SafeId
    camera_id: SafeId | None = None
    start_time: StrictUtcDatetime
    end_time: StrictUtcDatetime

    @field_validator("end_time")
    @classmethod
    def _end_after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        return end_after_start(end, info)


def end_after_start(end: datetime, info: ValidationInfo) -> datetime:
    """A field validator, not a model one, so the 422 points at `end_time` (skipped when start_time was invalid)."""
    start = info.data.get("start_time")
    if start is not None and end <= start:
        raise ValueError("end_time must be after start_time")
    return end


class Booking(BaseModel):
    id: SafeId
    user_id: SafeId
    camera_id: SafeId
    start_time: UtcDatetime
    end_time: UtcDatetime
    status: BookingStatus = BookingStatus.confirmed
    status_reason: str | None = Field(None, max_length=STATUS_REASON_LIMIT, description=(
        "Why the booking is in its status, where that needs saying: today only a `missed` booking has one, "
        "e.g. `recorder_offline: ...`"), examples=["camera_fault: camera_open: no camera found"])
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)

    @property
    def duration_s(self) -> float:
        return (self.end_time - self.start_time).total_seconds()

    def same_request(self, other: BookingIn, camera_id: str) -> bool:
        return (
            self.user_id == other.user_id
            and self.camera_id == (other.camera_id or camera_id)
            and self.start_time == other.start_time
            and self.end_time == other.end_time
        )


_VIDEO_NS = uuid.UUID("6f1c2a52-4c1e-4f0b-9a3e-2f6d7c9b8a10")


def video_id_for(booking_id: str) -> str:
    """Deterministic, so a retried insert after a crash is the same row, not a duplicate."""
    return str(uuid.uuid5(_VIDEO_NS, booking_id))


VideoKind = Literal["full", "highlight"]
"""`full`: the booking's finished video (one per booking); `highlight`: a clip a player asked for (any number)."""


def highlight_video_id(booking_id: str, clip_id: str) -> str:
    """Deterministic like video_id_for, per clip: a clip made again after a crash replaces its own row."""
    return str(uuid.uuid5(_VIDEO_NS, f"{booking_id}/highlight/{clip_id}"))


class Video(BaseModel):
    id: str
    kind: VideoKind = "full"
    booking_id: SafeId
    user_id: SafeId
    camera_id: SafeId
    storage_path: str
    size_bytes: int = Field(ge=0)
    duration_seconds: float = Field(ge=0)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    uploaded_at: UtcDatetime | None = None


LogoCorner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
"""The same four as shared/overlay.py's Corner (kept apart so this module does not import PyAV)."""
WIDTH_FRACTION_RANGE = (0.02, 0.5)
MARGIN_FRACTION_RANGE = (0.0, 0.2)


class LogoPlacement(BaseModel):
    """Where one logo goes and how big it is, as fractions of the video's width, so one setting suits
    every camera format. A logo without a placement keeps the default (shared/logo_layout.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"examples": [{"corner": "bottom-left", "width_fraction": 0.2,
                                                               "margin_fraction": 0.03}]})

    corner: LogoCorner
    width_fraction: float = Field(0.15, ge=WIDTH_FRACTION_RANGE[0], le=WIDTH_FRACTION_RANGE[1],
                                  description="Logo width / video width (its height follows the PNG's aspect)")
    margin_fraction: float = Field(0.02, ge=MARGIN_FRACTION_RANGE[0], le=MARGIN_FRACTION_RANGE[1],
                                   description="Gap to the two nearest edges / video width")


def corner_clashes(logo: LogoPlacement | None,
                   sponsors: list[LogoPlacement | None]) -> list[tuple[tuple[str | int, ...], str]]:
    """Two placements naming one corner would stack the logos there: each clash, where it is (field, index)."""
    seen: dict[str, str] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    named: list[tuple[tuple[str | int, ...], str, LogoPlacement | None]] = [(("logo_placement",), "the logo", logo)]
    named += [(("sponsor_logo_placements", i), f"sponsor logo {i}", p) for i, p in enumerate(sponsors)]
    for loc, who, placement in named:
        if placement is None:
            continue
        if placement.corner in seen:
            problems.append((loc, f"{who} and {seen[placement.corner]} are both placed {placement.corner}; "
                                  "each logo needs a corner of its own"))
        else:
            seen[placement.corner] = who
    return problems


class UserSettings(BaseModel):
    """Where a user's intro and logos live in the `media` bucket, and where the logos are drawn."""

    user_id: SafeId
    intro_video_path: str | None = None
    logo_path: str | None = None
    sponsor_logo_paths: list[str] = Field(default_factory=list, max_length=3)
    logo_placement: LogoPlacement | None = Field(None, description="The user's logo; null: the default")
    sponsor_logo_placements: list[LogoPlacement | None] = Field(
        default_factory=list, max_length=3,
        description="By position in sponsor_logo_paths (null or missing: the default)")
    updated_at: UtcDatetime = Field(default_factory=utc_now)


class SystemStatusRow(BaseModel):
    camera_id: SafeId
    collected_at: UtcDatetime
    snapshot: dict


class ObjectInfo(BaseModel):
    bucket: str
    path: str
    size_bytes: int
    content_type: str


def storage_path_for_video(user_id: str, booking_id: str) -> str:
    return f"{user_id}/{booking_id}.mp4"


def storage_path_for_highlight(user_id: str, booking_id: str, clip_id: str) -> str:
    """In the user's folder like the full video (the bucket's policies key on it), beside it in `highlights/`."""
    return f"{user_id}/highlights/{booking_id}/{clip_id}.mp4"


def storage_path_for_media(user_id: str, name: str) -> str:
    return f"{user_id}/media/{name}"


def is_aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


class ShareLink(BaseModel):
    """A signed, expiring link to one video; the row exists so a link can be revoked before it expires."""

    id: SafeId
    video_id: str
    created_at: UtcDatetime = Field(default_factory=utc_now)
    expires_at: UtcDatetime
    revoked_at: UtcDatetime | None = None
