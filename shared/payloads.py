"""Versioned MQTT payloads. Every message on the bus is one of these, as JSON."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import BookingStatus, SafeId
from shared.timeutil import UtcDatetime, utc_now


class Payload(BaseModel):
    """v lets a consumer refuse a shape it does not know instead of misreading it."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    sent_at: UtcDatetime = Field(default_factory=utc_now)


class ScheduledBooking(BaseModel):
    id: SafeId
    user_id: SafeId
    start_time: UtcDatetime
    end_time: UtcDatetime
    status: BookingStatus


class ScheduleSnapshot(Payload):
    """Retained on ezrec/<camera>/bookings: the full schedule, so a late subscriber needs nothing else."""

    camera_id: SafeId
    revision: int = Field(ge=0)
    bookings: list[ScheduledBooking]


class RecordingStarted(Payload):
    booking_id: SafeId
    camera_id: SafeId
    first_frame_at: UtcDatetime


class RecordingSegment(Payload):
    booking_id: SafeId
    camera_id: SafeId
    index: int = Field(ge=0)
    file: str
    start_at: UtcDatetime
    end_at: UtcDatetime
    frames: int = Field(ge=0)


class RecordingFinished(Payload):
    """The manifest of a finished recording; files are relative to RAW_RECORDINGS_DIR."""

    booking_id: SafeId
    camera_id: SafeId
    user_id: SafeId
    file: str
    first_frame_at: UtcDatetime
    last_frame_at: UtcDatetime
    frames: int = Field(ge=0)
    size_bytes: int = Field(ge=0)


class VideoProgress(Payload):
    booking_id: SafeId
    percent: float = Field(ge=0, le=100)
    fps: float = Field(ge=0)


class VideoProcessed(Payload):
    booking_id: SafeId
    duration_s: float = Field(ge=0)
    frames: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    warnings: list[str] = Field(default_factory=list)


class VideoUploaded(Payload):
    booking_id: SafeId
    video_id: str
    storage_path: str
    size_bytes: int = Field(ge=0)


class VideoFailed(Payload):
    booking_id: SafeId
    element: Literal["intro", "logo", "recording", "encoder", "upload", "media"]
    reason: str
    final: bool = False


class StatusSnapshot(Payload):
    camera_id: SafeId
    collected_at: UtcDatetime
    cpu_percent: float
    load_1m: float
    memory_percent: float
    memory_used_mb: float
    disk_total_gb: float
    disk_free_gb: float
    uptime_s: float
    cpu_temperature_c: float | None = None
    services: dict[str, str] = Field(default_factory=dict)
    recording_now: str | None = None


class MediaUpdated(Payload):
    user_id: SafeId
    kind: Literal["intro", "logo", "sponsor_logo"]
    path: str | None = None


class DeadLetter(Payload):
    """A message that failed validation, kept for a human instead of crashing the subscriber."""

    topic: str
    service: str
    error: str
    payload: str
