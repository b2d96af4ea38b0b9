"""Facts about a booking the worker needs beyond its events: owner, end time, capture origin of a segment.

The store is asked first; the recorder's per-booking metadata (RAW/<booking>/.booking.json) answers for
a booking the store does not know (yet).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import av

from services.video_worker.context import WorkerContext
from services.video_worker.media.decode import count_video_packets
from shared.recordings.layout import BookingDir, BookingMeta, UnsafeId
from shared.recordings.timeline import first_capture


def recorder_meta(ctx: WorkerContext, booking_id: str) -> BookingMeta | None:
    try:
        return BookingDir(ctx.settings.raw_dir, booking_id).read_meta()
    except UnsafeId:
        return None


def booking_user(ctx: WorkerContext, booking_id: str) -> str | None:
    booking = ctx.store.get_booking(booking_id)
    if booking is not None:
        return booking.user_id
    meta = recorder_meta(ctx, booking_id)
    return meta.user_id if meta else None


def booking_end(ctx: WorkerContext, booking_id: str) -> float | None:
    """The booking's end (epoch s): the store's, which follows edits, else what the recorder noted."""
    booking = ctx.store.get_booking(booking_id)
    if booking is not None:
        return booking.end_time.timestamp()
    meta = recorder_meta(ctx, booking_id)
    return meta.end_time.timestamp() if meta else None


def capture_start(container: av.container.InputContainer) -> datetime | None:
    """Capture time of a recorder file's first frame, from its metadata (see shared/recordings/timeline.py)."""
    return first_capture(container)


def recording_frames(recording: Path) -> int:
    """Frames of a finished recording: what the recorder counted into its folder's marker, else counted here."""
    if recording.is_dir():
        finished = BookingDir(recording.parent, recording.name).read_finished()
        return finished.frames if finished is not None else 0
    return count_video_packets(recording)
