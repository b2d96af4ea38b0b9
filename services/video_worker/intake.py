"""How work reaches the table: MQTT events are the fast path, a scan of RAW_RECORDINGS_DIR the recovery path.

Every event handler only records facts (idempotently) and wakes the loops; the scan finds whatever
an event did not announce (a lost event, a worker that was down, another worker's dead session)
and tidies up after crashes. Several workers may run both at once on one DATA_DIR.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from services.recorder.layout import SEGMENT_GLOB, BookingDir
from shared.atomic import remove_stale_temps
from shared.payloads import MediaUpdated, RecordingFinished, RecordingSegment, RecordingStarted

from .context import WorkerContext
from .facts import booking_user
from .jobs import JobState
from .part_step import maybe_job, segment_closed
from .upload_step import cleanup, redo_whole, settle_raw

log = logging.getLogger(__name__)

STALE_TEMP_MIN_S = 300.0


class Intake:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._media_users: set[str] = set()
        self._lock = threading.Lock()

    # ---- events (paho's thread: record and return) -------------------------------------------------

    def _ours(self, camera_id: str) -> bool:
        return camera_id == self.ctx.settings.camera_id

    def on_recording_finished(self, _topic: str, event: RecordingFinished) -> None:
        if not self._ours(event.camera_id):
            return
        ctx = self.ctx
        if event.file != f"{event.booking_id}.mp4":  # the recorder's layout; anything else could point anywhere
            raise ValueError(f"recording file {event.file!r} is not {event.booking_id}.mp4")
        log.info("recording/finished for booking %s (%d frames)", event.booking_id, event.frames)
        if ctx.jobs.add(event.booking_id, event.user_id, event.file, event.frames):
            log.info("job queued for booking %s", event.booking_id)
        job = ctx.jobs.get(event.booking_id)
        if job is not None and job.state in (JobState.processed, JobState.done) and job.mode == "parts" \
                and job.frames_covered is not None and job.frames_covered != event.frames:
            redo_whole(ctx, event.booking_id, f"covered {job.frames_covered} of {event.frames} frames")
        elif job is not None and job.state == JobState.done:
            settle_raw(ctx, job)
        ctx.wake_all()

    def on_recording_segment(self, _topic: str, event: RecordingSegment) -> None:
        if not self._ours(event.camera_id):
            return
        idx = event.index
        if event.file != f"{event.booking_id}/seg-{idx:05d}.mp4":  # see services/recorder/layout.py
            raise ValueError(f"segment file {event.file!r} does not match booking {event.booking_id}, index {idx}")
        self.ctx.jobs.add_part(event.booking_id, idx, event.file, user_id=event.user_id, closed=True,
                               start_at=event.start_at.timestamp(), end_at=event.end_at.timestamp())
        self.discover(event.booking_id)  # the next segment is open by now: start following it
        self.ctx.wake_all()

    def on_recording_started(self, _topic: str, event: RecordingStarted) -> None:
        if self._ours(event.camera_id):
            self.discover(event.booking_id)
            self.ctx.wake_all()

    def on_media_updated(self, _topic: str, event: MediaUpdated) -> None:
        with self._lock:
            self._media_users.add(event.user_id)  # fetched by the loop: downloads do not belong on paho's thread
        self.ctx.wake_all()

    # ---- media -----------------------------------------------------------------------------------

    def sync_media(self) -> None:
        """Follow media changes: new files fetched, removed ones dropped, their prepared intros forgotten,
        and a new intro prepared for the camera's format before the next booking needs it."""
        with self._lock:
            users, self._media_users = self._media_users, set()
        for user in sorted(users):
            try:
                media = self.ctx.media.sync_user(user)
                fmt = self.ctx.intros.last_format()
                if media.intro is not None and fmt is not None:
                    self.ctx.intros.get(media.intro, fmt)
            except Exception:
                log.exception("media update for %s failed; the next job fetches what it needs", user)

    # ---- scan ------------------------------------------------------------------------------------

    def discover(self, booking_id: str) -> None:
        """Register every segment file of one booking (an open one too: it is followed while written)."""
        ctx = self.ctx
        try:
            booking_dir = BookingDir(ctx.settings.raw_dir, booking_id)
        except ValueError:
            return
        segments = booking_dir.segments()
        if not segments:
            return
        job = ctx.jobs.get(booking_id)
        if job is not None and (job.state != JobState.pending or job.mode == "whole"):
            return
        meta = booking_dir.read_meta()
        user = meta.user_id if meta else None
        now = time.time()
        for path in segments:
            try:
                idx = int(path.stem.split("-", 1)[1])
            except (IndexError, ValueError):
                continue
            closed = segment_closed(ctx, booking_id, path, now)
            ctx.jobs.add_part(booking_id, idx, booking_dir.relative(path), user_id=user, closed=closed)
        if job is None:
            maybe_job(ctx, booking_id)  # all its segments done, no event said the recording is over

    def scan(self) -> None:
        ctx = self.ctx
        raw_dir = ctx.settings.raw_dir
        if raw_dir.is_dir():
            for entry in sorted(raw_dir.iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if any(entry.glob(SEGMENT_GLOB)):
                        self.discover(entry.name)
                elif entry.suffix == ".mp4":
                    self._recording(entry)
        for job in ctx.jobs.uncleaned_done():
            cleanup(ctx, job)
        ctx.jobs.prune()
        self._stale_temps()
        ctx.intros.remove_stale_temps()

    def _recording(self, raw: Path) -> None:
        """A joined recording on disk: a job for it, or (job done) the check that the video covers it."""
        ctx = self.ctx
        booking_id = raw.stem
        job = ctx.jobs.get(booking_id)
        if job is None:
            user = booking_user(ctx, booking_id)
            if user is None:
                log.warning("recording %s has no booking in the store; leaving it", raw.name)
                return
            if ctx.jobs.add(booking_id, user, raw.name):
                log.info("recovered unprocessed recording %s", raw.name)
        elif job.raw_file is None:
            ctx.jobs.add(booking_id, job.user_id, raw.name)
        elif job.state == JobState.done:
            settle_raw(ctx, job)

    def _stale_temps(self) -> None:
        """Temp files left by a worker killed mid-write (a live writer keeps touching its temp file)."""
        older_than = max(STALE_TEMP_MIN_S, 4 * self.ctx.settings.worker_lease_s)
        processed = self.ctx.settings.processed_dir
        if not processed.is_dir():
            return
        for tmp in remove_stale_temps(processed, (".*.tmp", "*/.*.tmp"), older_than):
            log.info("removed stale temp file %s", tmp)
        for folder in processed.iterdir():  # pieces of a booking whose job is gone (e.g. failed)
            if folder.is_dir() and self.ctx.jobs.get(folder.name) is None and not self.ctx.jobs.parts(folder.name):
                shutil.rmtree(folder, ignore_errors=True)

