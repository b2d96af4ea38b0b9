"""What may happen to a booking, by where it is in its life. Pure functions, so the rules are testable alone.

- upcoming (confirmed, start in the future): PUT any valid times; DELETE removes it (204).
- in_progress (confirmed, start <= now < end): PUT may move end_time only, not into the past;
  DELETE ends it now (200): the recorder stops and keeps what it recorded.
- ended (confirmed, end passed: being finalised; or `missed`): PUT and DELETE are refused (409).
- recorded (completed, video_processed, video_uploaded): PUT and DELETE are refused (409).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from shared.models import Booking, BookingStatus


class Phase(StrEnum):
    upcoming = "upcoming"
    in_progress = "in_progress"
    ended = "ended"
    recorded = "recorded"


class RuleViolation(Exception):
    """status 409 (the booking's state forbids it) or 422 (the new values are invalid)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def phase(booking: Booking, now: datetime) -> Phase:
    if booking.status == BookingStatus.missed:
        return Phase.ended
    if booking.status != BookingStatus.confirmed:
        return Phase.recorded
    if now < booking.start_time:
        return Phase.upcoming
    if now < booking.end_time:
        return Phase.in_progress
    return Phase.ended


def check_times(start: datetime, end: datetime, now: datetime, max_minutes: int) -> None:
    """The rules every new or changed booking meets (end after start is checked by the models)."""
    if end - start > timedelta(minutes=max_minutes):
        raise RuleViolation(422, f"longer than MAX_BOOKING_MINUTES={max_minutes}", "end_time")
    if end <= now:
        raise RuleViolation(422, "ends in the past", "end_time")


def check_change(booking: Booking, start: datetime, end: datetime, now: datetime, max_minutes: int) -> None:
    current = phase(booking, now)
    if current == Phase.recorded:
        raise RuleViolation(409, f"booking {booking.id} is {booking.status}: a recorded booking cannot be changed")
    if current == Phase.ended:
        raise RuleViolation(409, f"booking {booking.id} has ended: it can no longer be changed")
    if current == Phase.in_progress and start != booking.start_time:
        raise RuleViolation(409, f"booking {booking.id} is recording: only its end_time can change")
    check_times(start, end, now, max_minutes)


def cancel_action(booking: Booking, now: datetime) -> Phase:
    """DELETE: upcoming -> remove it; in_progress -> end it now; anything else is refused."""
    current = phase(booking, now)
    if current == Phase.recorded:
        raise RuleViolation(409, f"booking {booking.id} is {booking.status}: its recording is kept")
    if current == Phase.ended:
        raise RuleViolation(409, f"booking {booking.id} has ended: it can no longer be cancelled")
    return current


def end_now(booking: Booking, now: datetime) -> datetime:
    """The end time that stops an in-progress booking at once (kept after its start, as the store requires)."""
    return max(now, booking.start_time + timedelta(seconds=1))
