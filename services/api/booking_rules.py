"""What a valid booking is and what may happen to it, by where it is in its life: the rules in words (TIMES,
VALIDITY, PHASES below: the one place they are written; the API's OpenAPI description and README's "API" section
are built from them, `make docs`) and as pure functions, so they are testable alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from shared.models import SAFE_ID_PATTERN, Booking, BookingStatus
from shared.timeutil import EARLIEST, LATEST

TIMES = (
    "**Times** (bodies and query parameters alike) must be ISO 8601 text with an offset (`2026-11-25T18:00:00Z`, "
    "`2026-11-25T19:00:00+01:00`; seconds and up to 6 decimals optional), "
    f"from {EARLIEST:%Y-%m-%d} and before {LATEST:%Y-%m-%d}; a bare number (unix time), a date alone or a time "
    "without an offset is refused with a 422 whose `loc` names the field. Inside, every time is UTC."
)

VALIDITY = (
    "**A valid booking**: `id`, `user_id` (and `camera_id`, if given) match `" + SAFE_ID_PATTERN.strip("^$")
    + "`; `end_time` after `start_time` (reported on `end_time`); at most `MAX_BOOKING_MINUTES` long, not "
    "over; not already ended; no overlap with another booking on the same camera (a 409 naming it: "
    "`detail.conflicting_id`). A list is created all or nothing, and one id twice in it is a 422. Creating is "
    "idempotent: the same id with the same details again is a 200 with the stored booking, with different details "
    "a 409. An id already stored is not judged by the time rules again, so a retry after a timeout still gets its "
    "200 once the booking has started, ended or been recorded (or `MAX_BOOKING_MINUTES` has shrunk); new ids in "
    "the same request get every check."
)


class Phase(StrEnum):
    upcoming = "upcoming"
    in_progress = "in_progress"
    ended = "ended"
    recorded = "recorded"


PHASE_RULES: dict[Phase, tuple[str, str, str]] = {
    # phase: (which bookings, what PUT /bookings/{id} accepts, what DELETE /bookings/{id} does). A "409" at the
    # start of a cell is checked against check_change / cancel_action by tests/api/test_booking_rules_doc.py.
    Phase.upcoming: ("confirmed, not started", "any valid times", "removed (204)"),
    Phase.in_progress: (
        "confirmed and recording now (start <= now < end)",
        "`end_time` only, not into the past; the recorder stops at the new end",
        "ended now (200 with the booking, `end_time` = now): the recorder stops, keeps what it recorded, marks it "
        "`completed`, and the video is made as usual"),
    Phase.ended: (
        "confirmed, its end has passed (being finalised), or `missed` (the slot passed with nothing recorded: "
        "`status_reason` says why)", "409", "409"),
    Phase.recorded: ("`completed`, `video_processed`, `video_uploaded`", "409",
                     "409: the recording and its video are kept"),
}

PHASES = "\n".join([
    "**Changing or cancelling a booking** depends on where it is in its life (now = the device's clock); every "
    "change meets the rules of a valid booking, and rewrites `DATA_DIR/bookings.json` and the retained schedule "
    "snapshot on `ezrec/<camera_id>/bookings`:",
    "",
    "| phase | booking | `PUT /bookings/{id}` (new `start_time`, `end_time`) | `DELETE /bookings/{id}` |",
    "|---|---|---|---|",
    *(f"| {p.value.replace('_', ' ')} | {who} | {put} | {delete} |" for p, (who, put, delete) in PHASE_RULES.items()),
])

RULES = "\n\n".join([TIMES, VALIDITY, PHASES])
"""Everything above, as README's "API" section and the bookings endpoints' descriptions show it."""


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
