"""Pure scheduling decisions: which bookings to record and which one owns a given instant."""

from __future__ import annotations

import logging
from datetime import datetime

from shared.models import BookingStatus
from shared.payloads import ScheduledBooking

log = logging.getLogger(__name__)


def recordable(bookings: list[ScheduledBooking], now: datetime, done: set[str]) -> list[ScheduledBooking]:
    """Confirmed, not over, not already recorded; a booking overlapping an earlier one is skipped.

    The API refuses overlaps, so one here means bad data: never record two at once.
    """
    candidates = sorted(
        (b for b in bookings if b.status == BookingStatus.confirmed and b.end_time > now and b.id not in done),
        key=lambda b: (b.start_time, b.id),
    )
    kept: list[ScheduledBooking] = []
    for booking in candidates:
        if kept and booking.start_time < kept[-1].end_time:
            log.warning("skipping booking %s: overlaps %s", booking.id, kept[-1].id)
            continue
        kept.append(booking)
    return kept


def active_at(plan: list[ScheduledBooking], at: datetime) -> ScheduledBooking | None:
    """Half-open [start, end): back-to-back bookings hand over on the exact frame."""
    for booking in plan:
        if booking.start_time <= at < booking.end_time:
            return booking
    return None
