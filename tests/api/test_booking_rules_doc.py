"""The booking rules are written once (services/api/booking_rules.py): the API's description at /docs and README's
"API" section are that text, and its phase table says what the rule functions do."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scripts.readme_sections import README, section
from services.api.booking_rules import (
    PHASE_RULES,
    PHASES,
    TIMES,
    VALIDITY,
    Phase,
    RuleViolation,
    cancel_action,
    check_change,
    phase,
)
from shared.models import Booking, BookingStatus
from shared.timeutil import utc_now


def test_readme_holds_the_rules_verbatim():
    assert section("booking rules") in README.read_text(encoding="utf-8"), "README's booking rules are stale: make docs"


def test_the_api_describes_bookings_with_the_same_text(client):
    spec = client.get("/openapi.json").json()
    assert TIMES in spec["info"]["description"]
    assert spec["paths"]["/bookings"]["post"]["description"] == VALIDITY
    assert spec["paths"]["/bookings/{booking_id}"]["put"]["description"] == PHASES
    assert spec["paths"]["/bookings/{booking_id}"]["delete"]["description"] == PHASES


def _booking_in(wanted: Phase) -> Booking:
    now = utc_now()
    start, end, status = {
        Phase.upcoming: (now + timedelta(hours=1), now + timedelta(hours=2), BookingStatus.confirmed),
        Phase.in_progress: (now - timedelta(minutes=5), now + timedelta(hours=1), BookingStatus.confirmed),
        Phase.ended: (now - timedelta(hours=2), now - timedelta(hours=1), BookingStatus.confirmed),
        Phase.recorded: (now - timedelta(hours=2), now - timedelta(hours=1), BookingStatus.completed),
    }[wanted]
    booking = Booking(id="b1", user_id="u1", camera_id="cam1", start_time=start, end_time=end, status=status)
    assert phase(booking, utc_now()) == wanted
    return booking


def _refused(call) -> int | None:
    try:
        call()
    except RuleViolation as exc:
        return exc.status
    return None


@pytest.mark.parametrize("wanted", list(Phase))
def test_the_phase_table_says_what_the_rules_do(wanted):
    assert set(PHASE_RULES) == set(Phase), "every phase has its row"
    booking = _booking_in(wanted)
    _, put, delete = PHASE_RULES[wanted]
    now = utc_now()
    # A PUT that only moves the end later: allowed in every phase the table does not refuse.
    later = max(booking.end_time, now) + timedelta(minutes=10)
    put_status = _refused(lambda: check_change(booking, booking.start_time, later, now, 24 * 60))
    assert (put_status == 409) == put.startswith("409"), f"{wanted}: PUT {put!r} but the rules answer {put_status}"
    delete_status = _refused(lambda: cancel_action(booking, now))
    assert (delete_status == 409) == delete.startswith("409"), f"{wanted}: DELETE {delete!r}, rules {delete_status}"
    if wanted == Phase.in_progress:  # only end_time may change while recording
        assert _refused(lambda: check_change(booking, booking.start_time + timedelta(seconds=1), later, now,
                                             24 * 60)) == 409
    if delete_status is None:
        assert cancel_action(booking, now) == wanted, "DELETE removes an upcoming one, ends one in progress"
