"""Judging a schedule booking by booking: a malformed booking is set aside, the good ones still record.

ScheduleSnapshot validates all-or-nothing, so one bad booking would cost the whole schedule.
The recorder reads the envelope loosely and checks each booking on its own: naive times, an end
not after the start, a duration over MAX_BOOKING_MINUTES, an id that is not a safe file name or a
repeated id are rejected with a reason, and never reach the planner or a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from shared.models import SafeId
from shared.payloads import Payload, ScheduledBooking, ScheduleSnapshot
from shared.schedule_cache import SCHEMA, CacheFormatError

PAYLOAD_TEXT_LIMIT = 4096


class LooseSchedule(Payload):
    """The ScheduleSnapshot envelope with its bookings left unparsed."""

    camera_id: SafeId
    revision: int = Field(ge=0)
    bookings: list[Any]


@dataclass(frozen=True)
class Rejected:
    booking: Any
    reason: str

    @property
    def text(self) -> str:
        return json.dumps(self.booking, default=str)[:PAYLOAD_TEXT_LIMIT]


def judge_booking(raw: Any, max_minutes: int) -> ScheduledBooking:
    """Raises ValueError with a readable reason."""
    try:
        booking = ScheduledBooking.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'booking'}: {e['msg']}"
                            for e in exc.errors()[:5])
        raise ValueError(reasons) from None
    if booking.end_time <= booking.start_time:
        raise ValueError(f"end_time {booking.end_time.isoformat()} is not after start_time "
                         f"{booking.start_time.isoformat()}")
    if booking.end_time - booking.start_time > timedelta(minutes=max_minutes):
        raise ValueError(f"lasts {(booking.end_time - booking.start_time).total_seconds() / 60:.0f} min, "
                         f"over MAX_BOOKING_MINUTES={max_minutes}")
    return booking


def judge(loose: LooseSchedule, max_minutes: int) -> tuple[ScheduleSnapshot, list[Rejected]]:
    kept: list[ScheduledBooking] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for raw in loose.bookings:
        try:
            booking = judge_booking(raw, max_minutes)
        except ValueError as exc:
            rejected.append(Rejected(raw, str(exc)))
            continue
        if booking.id in seen:
            rejected.append(Rejected(raw, f"booking id {booking.id} appears twice in the schedule"))
            continue
        seen.add(booking.id)
        kept.append(booking)
    snapshot = ScheduleSnapshot(camera_id=loose.camera_id, revision=loose.revision, bookings=kept,
                                sent_at=loose.sent_at)
    return snapshot, rejected


def read_cache_loose(path: Path) -> LooseSchedule | None:
    """The bookings cache (`ezrec.bookings/1`), envelope checked, bookings left to judge()."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheFormatError(f"{path} is not readable: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CacheFormatError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise CacheFormatError(f"{path} has schema {found!r}, expected {SCHEMA!r}")
    try:
        return LooseSchedule.model_validate({k: v for k, v in data.items() if k != "schema"})
    except ValidationError as exc:
        raise CacheFormatError(f"{path} does not match {SCHEMA}: {exc.errors()[:3]}") from exc
