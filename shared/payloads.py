"""Versioned MQTT payloads. Every message on the bus is one of these, as JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

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
    user_id: SafeId | None = None
    size_bytes: int = Field(default=0, ge=0)


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
    segments: int = Field(default=0, ge=0)


class VideoProgress(Payload):
    booking_id: SafeId
    percent: float = Field(ge=0, le=100)
    fps: float = Field(ge=0)
    worker: str | None = None  # WORKER_ID of the worker doing it (several may share the load)
    route: Literal["remux", "transcode"] | None = None  # how the part in hand is finished (docs/finishing.md)
    reason: str | None = None  # why a transcode, not a remux (remuxed_source, logo_changed, ...)


class VideoProcessed(Payload):
    booking_id: SafeId
    duration_s: float = Field(ge=0)
    frames: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    warnings: list[str] = Field(default_factory=list)
    worker: str | None = None
    route: Literal["remux", "transcode"] | None = None  # remux: the recorder's segments as they are
    route_reasons: list[str] = Field(default_factory=list)  # why (some of) it was transcoded


class VideoUploaded(Payload):
    booking_id: SafeId
    video_id: str
    storage_path: str
    size_bytes: int = Field(ge=0)
    worker: str | None = None


class VideoFailed(Payload):
    booking_id: SafeId
    element: Literal["intro", "logo", "recording", "encoder", "upload", "media"]
    reason: str
    final: bool = False
    worker: str | None = None


HighlightSource = Literal["mqtt", "api", "button"]


class HighlightRequest(Payload):
    """On ezrec/<camera>/highlight/request. Every field is optional: an empty payload or `{}` asks for the last
    HIGHLIGHT_SECONDS of whatever is being recorded now, up to the moment the request arrives."""

    booking_id: SafeId | None = None  # refuse the press unless this booking is the one being recorded
    seconds: float | None = Field(None, gt=0, le=300)  # before the press (default HIGHLIGHT_SECONDS)
    after_s: float | None = Field(None, ge=0, le=60)  # after the press (default HIGHLIGHT_AFTER_S)
    request_id: SafeId | None = None  # echoed in the answer, so a client can match it
    source: HighlightSource = "mqtt"


class HighlightClip(Payload):
    """On ezrec/<camera>/highlight/clip, from the recorder: a clip to cut from the booking's recording. A press
    within a clip's span re-sends it with the same `clip_id`, a later `end_at` and one more press."""

    clip_id: SafeId
    booking_id: SafeId
    camera_id: SafeId
    user_id: SafeId
    start_at: UtcDatetime
    end_at: UtcDatetime
    presses: int = Field(ge=1)
    request_ids: list[SafeId] = Field(default_factory=list, max_length=100)


class HighlightRefused(Payload):
    """On ezrec/<camera>/highlight/refused: a press that makes no clip, and why (`code` for machines)."""

    camera_id: SafeId
    code: Literal["not_recording", "other_booking"]
    reason: str = Field(max_length=300)
    booking_id: SafeId | None = None
    request_id: SafeId | None = None
    source: HighlightSource = "mqtt"


class HighlightCreated(Payload):
    """On ezrec/<camera>/highlight/created: the clip is stored as a `videos` row of kind `highlight`."""

    clip_id: SafeId
    booking_id: SafeId
    video_id: str
    storage_path: str
    start_at: UtcDatetime
    end_at: UtcDatetime
    duration_s: float = Field(ge=0)
    size_bytes: int = Field(ge=0)
    copied: bool  # True: packets copied from the recording (no encode); False: transcoded with the logos
    presses: int = Field(ge=1)
    cpu_s: float | None = Field(None, ge=0)  # the worker's CPU time for this clip (cut, encode if any, store)
    worker: str | None = None


class HighlightFailed(Payload):
    """On ezrec/<camera>/highlight/failed: a clip that could not be made (`final`: given up; else retried)."""

    clip_id: SafeId
    booking_id: SafeId
    reason: str = Field(max_length=1000)
    final: bool = False
    worker: str | None = None


class Throttling(BaseModel):
    """`vcgencmd get_throttled` on a Pi: the hex bitmask and its named flags (now / since boot)."""

    raw: str
    under_voltage_now: bool
    arm_frequency_capped_now: bool
    throttled_now: bool
    soft_temp_limit_now: bool
    under_voltage_since_boot: bool
    arm_frequency_capped_since_boot: bool
    throttled_since_boot: bool
    soft_temp_limit_since_boot: bool


class BookingRef(BaseModel):
    id: SafeId
    user_id: SafeId
    start_time: UtcDatetime
    end_time: UtcDatetime


class ServiceError(BaseModel):
    """The last thing that went wrong in one service, as the status service heard it on the bus."""

    at: UtcDatetime
    topic: str
    reason: str
    booking_id: str | None = None


class CloudProblem(BaseModel):
    """Something in the cloud outbox an operator must act on: a write the cloud refused (kept, holding its booking's
    later writes, until replayed) or a fault every write meets (a key not accepted, a read-only database), retried."""

    id: str
    kind: Literal["cloud_refused", "cloud_fault"]
    message: str
    since: UtcDatetime
    key: str | None = None


_OMIT_WHEN_ABSENT = frozenset({"cpu_temperature_c", "throttling", "cloud_reachable", "cloud_problems"})


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
    load_5m: float | None = None
    load_15m: float | None = None
    memory_total_mb: float | None = None
    throttling: Throttling | None = None
    broker_connected: bool | None = None
    cloud_reachable: bool | None = None
    current_booking: BookingRef | None = None
    next_booking: BookingRef | None = None
    jobs_waiting: int | None = None
    segments_waiting: int | None = None
    uploads_pending: int | None = None
    camera_fault: str | None = None
    last_errors: dict[str, ServiceError] = Field(default_factory=dict)
    cloud_problems: list[CloudProblem] | None = None  # with Supabase only; None: not known this round
    alerts_active: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Readings this device or configuration cannot have (no thermal zone, no cloud) are left out, not null."""
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _OMIT_WHEN_ABSENT}


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


class Alert(Payload):
    """On ezrec/<camera>/alerts: a threshold crossed (`raised`) or back to normal (`cleared`), each sent once."""

    camera_id: SafeId
    id: str
    kind: Literal["disk_low", "temperature_high", "service_offline", "camera_fault", "booking_at_risk",
                  "cloud_refused", "cloud_fault"]
    state: Literal["raised", "cleared"]
    message: str
    value: float | str | None = None
    threshold: float | None = None
    at: UtcDatetime


class RecorderFault(Payload):
    """On ezrec/<camera>/recorder/fault: a camera or disk problem (`active`), then its end (`active: false`)."""

    camera_id: SafeId
    kind: Literal["camera_open", "camera_stall", "camera_error", "disk_low"]
    reason: str
    active: bool = True
    booking_id: SafeId | None = None
    retry_in_s: float | None = None


ServiceName = Literal["api", "recorder", "worker", "status"]
LOG_RECORDS_KEPT = 50
"""Each service publishes (and keeps across restarts) its last this-many records of WARNING and above."""
LOG_MESSAGE_LIMIT = 500


class LogRecordOut(BaseModel):
    """One warning or error as the operator sees it: the message (with the exception's last line), secrets redacted."""

    at: UtcDatetime
    level: Literal["WARNING", "ERROR", "CRITICAL"]
    logger: str = Field(max_length=100)
    message: str = Field(max_length=LOG_MESSAGE_LIMIT)
    pid: int | None = None


class ServiceLogs(Payload):
    """Retained on ezrec/<camera>/<service>/logs: the service's last warnings and errors, oldest first."""

    camera_id: SafeId
    service: ServiceName
    instance: SafeId | None = None  # WORKER_ID, when several workers share a camera
    pid: int
    records: list[LogRecordOut] = Field(default_factory=list, max_length=LOG_RECORDS_KEPT)


class ServiceCommand(Payload):
    """On ezrec/<camera>/<service>/command, published by the API only (the compose broker's ACL): `restart` (the
    service stops cleanly and exits with RESTART_EXIT_CODE, so its supervisor starts it again), `snapshot` (the
    status service publishes a status snapshot now), `publish_logs` (publish the recent records now)."""

    camera_id: SafeId
    service: ServiceName
    action: Literal["restart", "snapshot", "publish_logs"]
    request_id: SafeId
    reason: str | None = Field(None, max_length=300)


class CommandAck(Payload):
    """On ezrec/<camera>/<service>/command/ack: what a service did with a command."""

    camera_id: SafeId
    service: ServiceName
    instance: SafeId | None = None
    request_id: SafeId
    action: str = Field(max_length=32)
    outcome: Literal["accepted", "done", "refused", "ignored"]
    detail: str = Field(max_length=300)
    pid: int


class OperatorAction(Payload):
    """On ezrec/<camera>/operator/action: something an operator did through the API (dashboard, `ezrec` CLI, curl),
    and how it went; the same line is logged by the API."""

    camera_id: SafeId
    action: Literal["outbox_replay", "outbox_drop", "service_restart", "status_snapshot"]
    target: str = Field(max_length=200)
    outcome: str = Field(max_length=32)
    detail: str = Field(max_length=1000)
