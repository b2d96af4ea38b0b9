"""Request and response bodies that only the HTTP API uses (shared records live in shared/models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from shared.models import BookingIn, LogoPlacement, SafeId, end_after_start
from shared.payloads import CommandAck, LogRecordOut, StatusSnapshot
from shared.timeutil import StrictUtcDatetime, UtcDatetime


class Error(BaseModel):
    detail: str = Field(examples=["booking court1-2026-11-25-1800 not found"])


class ConflictDetail(BaseModel):
    message: str = Field(examples=["booking b2 overlaps booking b1 on camera cam1"])
    conflicting_id: str = Field(examples=["b1"], description="The other booking (or this one, for a state conflict)")


class ConflictError(BaseModel):
    detail: ConflictDetail


class BookingTimes(BaseModel):
    """New times for an existing booking (PUT /bookings/{id})."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"start_time": "2026-11-25T18:00:00Z", "end_time": "2026-11-25T19:30:00Z"}]})

    start_time: StrictUtcDatetime
    end_time: StrictUtcDatetime

    @field_validator("end_time")
    @classmethod
    def _end_after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        return end_after_start(end, info)


_ONE, _MANY = TypeAdapter(BookingIn), TypeAdapter(list[BookingIn])


def _one_or_many(value: object) -> BookingIn | list[BookingIn]:
    """A list is validated as a list, anything else as one booking: errors then point at the field
    (`body.start_time`, `body.1.end_time`), not at a member of a union (`function-after[...]`)."""
    return (_MANY if isinstance(value, list) else _ONE).validate_python(value)


_OneOrMany = Annotated[BookingIn | list[BookingIn],
                      PlainValidator(_one_or_many, json_schema_input_type=BookingIn | list[BookingIn])]


class BookingsIn(RootModel[_OneOrMany]):
    """POST /bookings: one booking, or a list of them (all or nothing)."""


class ShareLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"expires_in_s": 86400}]})

    expires_in_s: int | None = Field(
        None, ge=60, description="Lifetime in seconds; at most SHARE_LINK_TTL, which is also the default")


class ShareLinkOut(BaseModel):
    id: SafeId = Field(description="Link id, for revoking this one link")
    video_id: str
    token: str = Field(description="Signed token; anyone holding it can watch the video until it expires")
    url: str = Field(description="The share page (plays the video in a browser, no token header needed): on "
                     "PUBLIC_BASE_URL when it is set, else a path relative to the API's origin",
                     examples=["https://court1.example.org/share/eyJ...abc", "/share/eyJ...abc"])
    video_url: str = Field(description="The MP4 itself (supports Range)")
    expires_at: UtcDatetime


class Revoked(BaseModel):
    revoked: int = Field(ge=0, description="How many links were revoked by this call", examples=[1])


class UserSettingsIn(BaseModel):
    """Point a user's media at objects already in the `media` bucket (uploaded elsewhere)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "intro_video_path": "player42/media/intro-3f2a9c0d11e4b5a6.mp4",
        "logo_path": "player42/media/logo-0c1d2e3f4a5b6c7d.png",
        "sponsor_logo_paths": ["player42/media/sponsor-9a8b7c6d5e4f3a2b.png"],
    }]})

    intro_video_path: str | None = None
    logo_path: str | None = None
    sponsor_logo_paths: list[str] = Field(default_factory=list, max_length=3)
    logo_placement: LogoPlacement | None = Field(None, description="The user's logo; null: the default")
    sponsor_logo_placements: list[LogoPlacement | None] = Field(
        default_factory=list, max_length=3,
        description="By position in sponsor_logo_paths (null or missing: the default)")


class LogoPlacementsIn(BaseModel):
    """Where each of the user's logos goes (PUT /users/{user_id}/settings/logo_placements); the files stay."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "logo_placement": {"corner": "bottom-left", "width_fraction": 0.2, "margin_fraction": 0.03},
        "sponsor_logo_placements": [{"corner": "top-left", "width_fraction": 0.12, "margin_fraction": 0.02}, None],
    }]})

    logo_placement: LogoPlacement | None = Field(
        None, description="The user's logo; null: the default (top-right, 0.15 of the width, margin 0.02)")
    sponsor_logo_placements: list[LogoPlacement | None] = Field(
        default_factory=list, max_length=3,
        description="By position in the user's sponsor_logo_paths; null or missing: the first corner no other "
        "logo holds, in the order top-right, top-left, bottom-right, bottom-left")


class MediaNotify(BaseModel):
    """Media of a user changed outside this API (e.g. in the venue app's own storage)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "player42", "kind": "logo", "path": "player42/media/logo-0c1d2e3f4a5b6c7d.png"}]})

    user_id: SafeId
    kind: Literal["intro", "logo", "sponsor_logo"]
    path: str | None = Field(None, description="New object path in the `media` bucket, or null when removed")


def unprocessable(*problems: tuple[tuple[str | int, ...], str]) -> RequestValidationError:
    """A 422 shaped exactly like FastAPI's own (HTTPValidationError), so clients parse one format."""
    errors: list[dict[str, Any]] = [{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in problems]
    return RequestValidationError(errors)


# ---- the operator's device actions -------------------------------------------------------------------------


class ServiceState(BaseModel):
    """One service as the API sees it: its availability (heartbeat and will, as the status service judges them)
    and its last warnings and errors (a worker with WORKER_ID: one entry per worker)."""

    service: Literal["api", "recorder", "worker", "status"]
    instance: str | None = Field(None, description="WORKER_ID of this worker, when several share the camera")
    availability: Literal["online", "offline", "unknown"] = Field(
        description="The service's last retained word on ezrec/<camera>/<service>/availability (`unknown`: none "
        "heard since the API started)")
    pid: int | None = Field(None, description="From its heartbeat file, while fresh (same DATA_DIR only)",
                            examples=[4711])
    heartbeat_age_s: float | None = Field(None, description="Age of its heartbeat file, seconds", examples=[2.4])
    records: list[LogRecordOut] = Field(
        default_factory=list, description="Its last (at most 50) records of WARNING and above, oldest first, "
        "secrets replaced by ***")
    records_sent_at: UtcDatetime | None = Field(None, description="When the service published this list")


class RestartIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "stuck after a Wi-Fi cut"}]})

    reason: str | None = Field(None, max_length=300,
                               description="Logged by the service (as a warning) and in the operator's event")


class CommandResult(BaseModel):
    """A command sent to a service, with its answer when it came in time."""

    request_id: str = Field(examples=["op-3f2a9c0d11e4"])
    service: str = Field(examples=["worker"])
    action: str = Field(examples=["restart"])
    sent_at: UtcDatetime
    ack: CommandAck | None = Field(None, description="The service's answer (null: none within the wait)")
    message: str = Field(examples=["worker (pid 4711) stops cleanly and exits with 75; its supervisor starts it "
                                   "again"])


class SnapshotResult(CommandResult):
    snapshot: StatusSnapshot | None = Field(None, description="The snapshot collected for this request (null: none "
                                            "arrived within the wait)")
