"""How work reaches the table: MQTT events are the fast path, a scan of RAW_RECORDINGS_DIR the recovery path.

Every event handler only records facts (idempotently) and wakes the loops; the scan finds whatever
an event did not announce (a lost event, a worker that was down, another worker's dead session)
and tidies up after crashes. Several workers may run both at once on one DATA_DIR.

Events are hints, never the authority on whose video it is: the owner comes from the store (or, for a
booking it does not hold, what the recorder noted beside its segments), and the booking must be this
camera's. An event for a booking nobody knows, or whose file is not there, is held back for HINT_WAIT_S
(at most MAX_HINTS of them) and then ignored and dead-lettered; it never becomes a job.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from services.video_worker.booking_facts import recorder_meta
from services.video_worker.context import WorkerContext
from services.video_worker.job_table import JobState
from services.video_worker.part_step import maybe_job, segment_closed
from services.video_worker.upload_step import cleanup, redo_whole, settle_raw
from shared.atomic import remove_stale_temps
from shared.payloads import DeadLetter, MediaUpdated, RecordingFinished, RecordingSegment, RecordingStarted
from shared.recordings.layout import FINISHED_NAME, SEGMENT_GLOB, VIDEO_SUFFIX, BookingDir, segment_file, video_name
from shared.topics import DEADLETTER

log = logging.getLogger(__name__)

STALE_TEMP_MIN_S = 300.0
HINT_WAIT_S = 60.0
"""How long an event for a booking not (yet) known, or whose file is not there, is held before it is ignored."""
MAX_HINTS = 100
"""Events held at once; beyond, the oldest is ignored (the scan still finds every real recording on disk)."""

Event = RecordingFinished | RecordingSegment


@dataclass
class _Hint:
    event: Event
    since: float  # time.monotonic() of its first arrival
    why: str


class Intake:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._media_users: set[str] = set()
        self._lock = threading.Lock()
        self._hints: dict[tuple[str, int], _Hint] = {}  # (booking, segment index or -1 for finished) -> hint

    # ---- events (paho's thread: record and return) -------------------------------------------------

    def _ours(self, camera_id: str) -> bool:
        return camera_id == self.ctx.settings.camera_id

    def on_recording_finished(self, _topic: str, event: RecordingFinished) -> None:
        if not self._ours(event.camera_id):
            return
        if event.file not in (event.booking_id, video_name(event.booking_id)):  # the recorder's layout, nothing else
            joined = video_name(event.booking_id)
            raise ValueError(f"recording {event.file!r} is neither {event.booking_id} nor {joined}")
        log.info("recording/finished for booking %s (%d frames)", event.booking_id, event.frames)
        self._offer(event)

    def _take_finished(self, event: RecordingFinished, owner: str) -> str | None:
        """None once taken; else why it must wait (the recording file is not there and no job exists)."""
        ctx = self.ctx
        job = ctx.jobs.get(event.booking_id)
        if job is None and ctx.recording_on_disk(event.booking_id, event.file) is None:
            return f"no finished recording {event.file}"
        if ctx.jobs.add(event.booking_id, owner, event.file, event.frames):
            log.info("job queued for booking %s", event.booking_id)
        job = ctx.jobs.get(event.booking_id)
        if job is not None and job.state in (JobState.processed, JobState.done) and job.mode == "parts" \
                and job.frames_covered is not None and job.frames_covered != event.frames:
            redo_whole(ctx, event.booking_id, f"covered {job.frames_covered} of {event.frames} frames")
        elif job is not None and job.state == JobState.done:
            settle_raw(ctx, job)
        ctx.wake_all()
        return None

    def on_recording_segment(self, _topic: str, event: RecordingSegment) -> None:
        if not self._ours(event.camera_id):
            return
        idx = event.index
        if event.file != segment_file(event.booking_id, idx):
            raise ValueError(f"segment file {event.file!r} does not match booking {event.booking_id}, index {idx}")
        self._offer(event)

    def _take_segment(self, event: RecordingSegment, owner: str) -> str | None:
        if not (self.ctx.settings.raw_dir / event.file).is_file():
            # Joined and removed already (a late event), or never written: the joined recording decides.
            log.info("booking %s: segment %d is not on disk; not queued", event.booking_id, event.index)
            return None
        self.ctx.jobs.add_part(event.booking_id, event.index, event.file, user_id=owner, closed=True,
                               start_at=event.start_at.timestamp(), end_at=event.end_at.timestamp())
        self.discover(event.booking_id)  # the next segment is open by now: start following it
        self.ctx.wake_all()
        return None

    # ---- events are hints: the owner comes from the store ----------------------------------------------

    def owner_of(self, booking_id: str) -> tuple[str | None, str]:
        """(owner, why not): the store's owner of this camera's booking; for a booking the store does not
        hold, what the recorder noted in its folder, or what this table learnt from it for its segments."""
        ctx = self.ctx
        booking = ctx.store.get_booking(booking_id)
        if booking is not None:
            if booking.camera_id != ctx.settings.camera_id:
                return None, f"booking {booking_id} is camera {booking.camera_id}'s, not {ctx.settings.camera_id}'s"
            return booking.user_id, ""
        meta = recorder_meta(ctx, booking_id)
        if meta is not None:
            return meta.user_id, ""
        noted = next((p.user_id for p in ctx.jobs.parts(booking_id) if p.user_id), None)
        if noted is not None:
            return noted, ""
        return None, f"booking {booking_id} is not in the store"

    def _offer(self, event: Event, since: float | None = None) -> None:
        """Take the event if its booking is known and its file there; else hold it (`since`: held from then)."""
        key = (event.booking_id, event.index if isinstance(event, RecordingSegment) else -1)
        owner, why = self.owner_of(event.booking_id)
        if owner is not None:
            if since is None and event.user_id is not None and event.user_id != owner:
                log.warning("%s for booking %s names user %s; the booking is %s's: the video is filed under %s",
                            _kind(event), event.booking_id, event.user_id, owner, owner)
            if isinstance(event, RecordingFinished):
                why = self._take_finished(event, owner) or ""
            else:
                why = self._take_segment(event, owner) or ""
            if not why:
                with self._lock:
                    self._hints.pop(key, None)
                return
        now = time.monotonic()
        since = now if since is None else since
        if now - since >= HINT_WAIT_S:
            self._ignore(event, f"{why} after {HINT_WAIT_S:.0f} s")
            with self._lock:
                self._hints.pop(key, None)
            return
        evicted: _Hint | None = None
        with self._lock:
            if key not in self._hints:
                log.info("%s for booking %s held back: %s", _kind(event), event.booking_id, why)
                if len(self._hints) >= MAX_HINTS:
                    evicted = self._hints.pop(min(self._hints, key=lambda k: self._hints[k].since))
            self._hints[key] = _Hint(event, since, why)
        if evicted is not None:
            self._ignore(evicted.event, f"{evicted.why}; more than {MAX_HINTS} events waiting for unknown bookings")

    def recheck_hints(self) -> None:
        """Held events whose booking or file has turned up are taken; those past HINT_WAIT_S are ignored."""
        with self._lock:
            held = list(self._hints.values())
        for hint in held:
            self._offer(hint.event, since=hint.since)

    @property
    def held_events(self) -> int:
        with self._lock:
            return len(self._hints)

    def _ignore(self, event: Event, reason: str) -> None:
        log.warning("ignoring %s for booking %s: %s", _kind(event), event.booking_id, reason)
        topic = self.ctx.bus.topics.recording_finished if isinstance(event, RecordingFinished) \
            else self.ctx.bus.topics.recording_segment
        self.ctx.bus.publish(DEADLETTER, DeadLetter(topic=topic, service="worker", error=f"ignored: {reason}",
                                                    payload=event.model_dump_json()[:4096]))

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
                    if (entry / FINISHED_NAME).is_file():  # the recorder's end of booking, event or not
                        self._recording(entry)
                elif entry.suffix == VIDEO_SUFFIX:
                    self._recording(entry)
        for job in ctx.jobs.uncleaned_done():
            cleanup(ctx, job)
        self.recheck_hints()
        self._forget_unknown_jobs()
        ctx.jobs.prune()
        self._stale_temps()
        ctx.intros.remove_stale_temps()

    def _forget_unknown_jobs(self) -> None:
        """Pending jobs with nothing to make a video from, for a booking nobody knows: what a forged event
        left in the table before events were checked (each was retried forever). Gone after HINT_WAIT_S."""
        ctx = self.ctx
        cutoff = time.time() - HINT_WAIT_S
        for job in ctx.jobs.pending_jobs(created_before=cutoff):
            booking_id = job.booking_id
            if ctx.raw_path(booking_id, job.raw_file).exists() or ctx.jobs.parts(booking_id) \
                    or (ctx.settings.raw_dir / booking_id).exists():
                continue
            owner, why = self.owner_of(booking_id)
            if owner is None and ctx.jobs.forget(booking_id, JobState.pending):
                log.warning("dropped the job of booking %s (user %s in its event): %s and nothing recorded for it",
                            booking_id, job.user_id, why)

    def _recording(self, raw: Path) -> None:
        """A finished recording on disk (a segment folder marked finished, or a joined file): a job for it,
        or (job done) the check that the video covers it."""
        ctx = self.ctx
        booking_id = raw.stem
        job = ctx.jobs.get(booking_id)
        if job is None:
            user, why = self.owner_of(booking_id)
            if user is None:
                log.warning("recording %s: %s; leaving it", raw.name, why)
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


def _kind(event: Event) -> str:
    return "recording/finished" if isinstance(event, RecordingFinished) else f"recording/segment {event.index}"
