"""A processed video -> the store (object, then videos row) -> local files removed.

Local files go only after both the object and the row are confirmed. Both writes are idempotent
(same object path, row keyed on the booking), so a kill -9 between any two lines just repeats them.
A failed upload is retried with exponential backoff and jitter, forever.
"""

from __future__ import annotations

import logging
import shutil

from services.video_worker.booking_facts import recording_frames
from services.video_worker.context import WorkerContext
from services.video_worker.job_table import Job, JobState
from services.video_worker.media.decode import describe_video
from shared import failpoints, spliced_file
from shared.models import BookingStatus, Video, storage_path_for_video, video_id_for
from shared.payloads import VideoUploaded
from shared.timeutil import utc_now

log = logging.getLogger(__name__)


def upload_job(ctx: WorkerContext, job: Job) -> None:
    owner = ctx.upload_owner
    output = ctx.output_path(job.booking_id)
    if not spliced_file.exists(output):
        # Only reachable if someone removed the output: make it again.
        log.warning("booking %s: processed video missing; processing again", job.booking_id)
        ctx.jobs.set_state(job.booking_id, owner, JobState.pending)
        ctx.wake_all()
        return
    booking = ctx.store.get_booking(job.booking_id)
    camera_id = booking.camera_id if booking else ctx.settings.camera_id
    path = storage_path_for_video(job.user_id, job.booking_id)
    failpoints.reached("before_upload")
    try:
        info = ctx.store.put_object("videos", path, output, "video/mp4")
        failpoints.reached("after_object")
        video = ctx.store.upsert_video(Video(
            id=video_id_for(job.booking_id), booking_id=job.booking_id, user_id=job.user_id, camera_id=camera_id,
            storage_path=path, size_bytes=info.size_bytes, duration_seconds=describe_video(output)[1],
            uploaded_at=utc_now()))
        failpoints.reached("after_row")
    except Exception as exc:
        delay = ctx.jobs.retry_later(job.booking_id, owner, f"{type(exc).__name__}: {exc}")
        log.warning("booking %s: upload failed (%s); retrying in %.0fs", job.booking_id, exc, delay)
        ctx.failed(job.booking_id, "upload", str(exc))
        return
    ctx.store.advance_booking_status(job.booking_id, BookingStatus.video_uploaded)
    ctx.bus.publish(ctx.bus.topics.video_uploaded, VideoUploaded(
        booking_id=job.booking_id, video_id=video.id, storage_path=path, size_bytes=info.size_bytes,
        worker=ctx.name))
    ctx.jobs.set_state(job.booking_id, owner, JobState.done)
    log.info("booking %s uploaded to videos/%s", job.booking_id, path)
    cleanup(ctx, ctx.jobs.get(job.booking_id) or job)


def cleanup(ctx: WorkerContext, job: Job) -> None:
    """After a confirmed upload: the processed video and pieces, and the recording once it is accounted for."""
    spliced_file.remove(ctx.output_path(job.booking_id))
    shutil.rmtree(ctx.parts_dir(job.booking_id), ignore_errors=True)
    if settle_raw(ctx, job):
        ctx.jobs.mark_cleaned(job.booking_id)  # else the scan comes back to it (uncleaned_done)


def settle_raw(ctx: WorkerContext, job: Job) -> bool:
    """A done job's joined recording: removed if the video covers it, else the video is made again from it.
    False while something else still reads it (a highlight clip being cut): the scan tries again.

    A video made from segments before the recorder joined them is checked against the joined file
    when it appears (normally identical; a mismatch means segments were lost on the way).
    """
    raw = ctx.recording_on_disk(job.booking_id, job.raw_file)
    if job.state != JobState.done or raw is None:
        return True
    wanted = ctx.raw_wanted(job.booking_id)
    if wanted is not None:
        log.info("booking %s: recording %s kept for now (%s)", job.booking_id, raw.name, wanted)
        return False
    if job.mode == "parts":
        expected = job.frames_expected if job.frames_expected is not None else recording_frames(raw)
        if job.frames_covered != expected:
            log.warning("booking %s: the video covers %s recording frames, the recording has %s; making it again "
                        "from the recording", job.booking_id, job.frames_covered, expected)
            redo_whole(ctx, job.booking_id, f"covered {job.frames_covered} of {expected} frames")
            return True
    if raw.is_dir():  # its segments (their names: the worker's pieces may be hard links to the same bytes)
        shutil.rmtree(raw, ignore_errors=True)
    else:
        raw.unlink(missing_ok=True)
    log.info("booking %s: recording %s removed (video uploaded)", job.booking_id, raw.name)
    return True


def redo_whole(ctx: WorkerContext, booking_id: str, reason: str) -> None:
    """Make the video again from the joined recording. The output goes first, so no step can mistake it
    for the new one; if the uploader holds the job, it finds no output and sends the job back too."""
    spliced_file.remove(ctx.output_path(booking_id))
    ctx.jobs.reopen(booking_id, "whole", reason)
    ctx.wake_all()
