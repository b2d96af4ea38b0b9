"""Opt-in: the same store against a REAL Supabase project, when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY
are set in the environment (the project must have supabase/migrations applied). Writes only rows and
objects under a unique test id and removes them afterwards."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest

from shared.models import BookingIn, BookingStatus, Video, video_id_for
from shared.timeutil import utc_now
from tests.supabase.conftest import drain

LIVE = bool(os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_ROLE_KEY"))

pytestmark = pytest.mark.skipif(
    not LIVE, reason="live Supabase test skipped: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are not both set "
    "in the environment (set them to run against a real project with supabase/migrations applied)")


def test_round_trip_against_a_real_project(make_settings, tmp_path):
    from shared.store.cloud import SupabaseStore

    settings = make_settings(supabase_url=os.environ["SUPABASE_URL"],
                             supabase_service_role_key=os.environ["SUPABASE_SERVICE_ROLE_KEY"])
    store = SupabaseStore(settings)
    tag = f"ezrec-live-{uuid.uuid4().hex[:12]}"
    user, booking_id = tag, tag
    path = f"{user}/{booking_id}.mp4"
    try:
        start = utc_now() + timedelta(days=30)
        store.create_bookings([BookingIn(id=booking_id, user_id=user, start_time=start,
                                         end_time=start + timedelta(minutes=5))], settings.camera_id)
        src = tmp_path / "v.mp4"
        src.write_bytes(os.urandom(7 * 1024 * 1024))  # over 6 MB: the resumable endpoint
        store.put_object("videos", path, src, "video/mp4")
        store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id=user,
                                 camera_id=settings.camera_id, storage_path=path, size_bytes=src.stat().st_size,
                                 duration_seconds=1.0, uploaded_at=utc_now()))
        store.advance_booking_status(booking_id, BookingStatus.video_uploaded)
        drain(store, timeout=300)
        assert store.outbox.rejected() == []
        fresh = SupabaseStore(settings.model_copy(update={"data_dir": tmp_path / "other"}))
        try:
            assert fresh.object_exists("videos", path)
            assert fresh.get_object("videos", path, tmp_path / "back.mp4").read_bytes() == src.read_bytes()
            assert fresh.cloud.fetch_booking_statuses([booking_id]) == {booking_id: "video_uploaded"}
        finally:
            fresh.close()
    finally:
        store.cloud.supabase.table("videos").delete().eq("booking_id", booking_id).execute()
        store.cloud.supabase.table("bookings").delete().eq("id", booking_id).execute()
        store.cloud.remove("videos", path)
        store.close()
