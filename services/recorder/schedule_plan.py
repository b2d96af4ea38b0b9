"""Pure scheduling decisions: which bookings to record and which one owns a given instant.

Every comparison is between aware UTC datetimes (the payload models normalise offsets on the way
in), so bookings across midnight or a daylight-saving change need no special case.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.models import BookingStatus
from shared.payloads import ScheduledBooking

log = logging.getLogger(__name__)


def recordable(bookings: list[ScheduledBooking], now: datetime, done: set[str],
               recording: str | None = None) -> list[ScheduledBooking]:
    """Confirmed, not over, not already recorded; a booking overlapping an earlier one is skipped.

    The API refuses overlaps, so one here means bad data: never record two at once. The booking being
    recorded (`recording`) always keeps its place: a conflicting booking that shows up mid-recording,
    even one that starts earlier, is the one skipped, so footage already running is never cut short.
    A skipped booking is skipped while it clashes: what is left of it after the winner ends is recorded.
    """
    candidates = sorted(
        (b for b in bookings if b.status == BookingStatus.confirmed and b.end_time > now and b.id not in done),
        key=lambda b: (b.id != recording, b.start_time, b.id),
    )
    kept: list[ScheduledBooking] = []
    for booking in candidates:
        clash = next((k for k in kept if booking.start_time < k.end_time and k.start_time < booking.end_time), None)
        if clash is not None:
            log.warning("skipping booking %s: overlaps %s", booking.id, clash.id)
            continue
        kept.append(booking)
    return sorted(kept, key=lambda b: (b.start_time, b.id))


def active_at(plan: list[ScheduledBooking], at: datetime) -> ScheduledBooking | None:
    """Half-open [start, end): back-to-back bookings hand over on the exact frame."""
    for booking in plan:
        if booking.start_time <= at < booking.end_time:
            return booking
    return None


def camera_due(plan: list[ScheduledBooking], now: datetime, warmup: timedelta) -> bool:
    """The camera should be running: the first planned booking starts within the warm-up."""
    return bool(plan) and plan[0].start_time - warmup <= now


def seconds_until_due(plan: list[ScheduledBooking], now: datetime, warmup: timedelta) -> float | None:
    """How long the scheduler may sleep before it must open the camera (None: nothing planned)."""
    if not plan:
        return None
    return max(0.0, (plan[0].start_time - warmup - now).total_seconds())


def keep_camera(plan: list[ScheduledBooking], at: datetime, warmup: timedelta, grace: timedelta) -> bool:
    """Between bookings the camera stays open when the next one is due within warm-up plus grace."""
    return bool(plan) and plan[0].start_time - warmup <= at + grace
