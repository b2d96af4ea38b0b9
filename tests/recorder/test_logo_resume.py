"""A booking's logos are fixed at its start: a recorder restarted mid-booking draws the same ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.recorder.logos import CaptureLogos
from shared.media_cache import MediaCache
from shared.models import BookingStatus
from shared.payloads import ScheduledBooking
from shared.recordings.layout import BookingDir
from shared.store import LocalStore
from tests.media import make_logo_png
from tests.recorder.test_logo_capture import _set_logos, _store_logo

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def test_a_resumed_session_draws_the_logos_fixed_at_the_bookings_start(tmp_path):
    """After a crash mid-booking the new recorder run reads the booking's choice, not the user's new logos."""
    store = LocalStore(tmp_path / "data")
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255))
    blue = make_logo_png(tmp_path / "blue.png", size=(64, 32), rgba=(0, 0, 255, 255))
    _set_logos(store, "fay", _store_logo(store, "fay", red))
    booking = ScheduledBooking(id="b-fay", user_id="fay", start_time=T0, end_time=T0 + timedelta(minutes=1),
                               status=BookingStatus.confirmed)
    booking_dir = BookingDir(tmp_path / "raw", booking.id)

    first = CaptureLogos(MediaCache(store, tmp_path / "media"))
    first.watch([booking])
    assert first.settled(10)
    fixed = first.fix(booking, booking_dir)
    assert [s.path.name[:3] for s in fixed.specs] == ["red"]
    first.close()

    _set_logos(store, "fay", _store_logo(store, "fay", blue))  # changed after the booking started
    again = CaptureLogos(MediaCache(store, tmp_path / "media"))  # the recorder restarted
    again.watch([booking])
    assert again.settled(10) and [p.name[:4] for p in again.files("fay")] == ["blue"]
    assert again.fix(booking, booking_dir).specs == fixed.specs, "the booking keeps the logos it started with"
    again.close()
