"""What the pipeline is doing, learnt from the bus and the recordings folders.

Recording now and the camera fault come from recorder events, bookings from the retained schedule
(or the bookings cache file until one arrives), last errors from failure events and dead letters,
queue lengths from the files on disk. What only events can tell (recording now, errors, fault) is
kept in DATA_DIR/state/status-pipeline.json so a restart of this service does not forget it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from shared import spliced_file
from shared.atomic import write_text_atomic
from shared.job_states import JobState, job_states
from shared.models import BookingStatus
from shared.payloads import (
    BookingRef,
    DeadLetter,
    RecorderFault,
    RecordingFinished,
    RecordingStarted,
    ScheduledBooking,
    ScheduleSnapshot,
    ServiceError,
    VideoFailed,
)
from shared.recordings.layout import FINISHED_NAME, VIDEO_SUFFIX
from shared.schedule_cache import CacheFormatError, read_cache
from shared.schedule_revision import judge_revision
from shared.timeutil import UtcDatetime, utc_now
from shared.topics import ROOT, SERVICES

log = logging.getLogger(__name__)

REASON_LIMIT = 300
TOPIC_LIMIT = 200
OTHER = "other"
"""last_errors is keyed by service: the four known ones, and `other` for a dead letter naming anything else
(any client may publish one), so the map has at most five entries whatever arrives."""
ERROR_KEYS = (*SERVICES, OTHER)


def service_error(error: ServiceError) -> ServiceError:
    """Bounded strings: every part of a ServiceError can come from a message someone else wrote."""
    return error.model_copy(update={"topic": error.topic[:TOPIC_LIMIT], "reason": error.reason[:REASON_LIMIT],
                                    "booking_id": (error.booking_id or "")[:64] or None})


class CameraFault(BaseModel):
    reason: str
    at: UtcDatetime


class PipelineMemory(BaseModel):
    """The persisted part: facts only events carry."""

    recording_now: str | None = None
    camera_fault: CameraFault | None = None
    last_errors: dict[str, ServiceError] = Field(default_factory=dict)

    @field_validator("last_errors")
    @classmethod
    def _bounded(cls, errors: dict[str, ServiceError]) -> dict[str, ServiceError]:
        """Also what an older version (or a person) left in the state file: known keys, bounded strings."""
        return {key: service_error(error) for key, error in errors.items() if key in ERROR_KEYS}


@dataclass(frozen=True)
class QueueCounts:
    jobs_waiting: int
    segments_waiting: int
    uploads_pending: int


@dataclass
class PipelineView:
    recording_now: str | None
    current_booking: BookingRef | None
    next_booking: BookingRef | None
    camera_fault: str | None
    last_errors: dict[str, ServiceError] = field(default_factory=dict)


def _visible(entry: os.DirEntry[str]) -> bool:
    """Atomic writes leave `.name.tmp` files beside their targets while in progress: not queue items."""
    return not entry.name.startswith(".")


def count_queue(raw_dir: Path, processed_dir: Path, jobs_db: Path | None = None) -> QueueCounts:
    """Jobs: the worker's job table (`jobs_db`) says which bookings' videos are still to be made (a job is
    pending while its recording is being assembled from segments, before any joined file exists), plus every
    finished RAW recording (`<id>/` with `.finished.json`, or a joined `<id>.mp4`) no job covers yet (the
    worker has not picked it up); a recording whose job is done or failed is not waiting. Without a
    readable table: every finished RAW recording.
    RAW `<id>/seg-*` of a recording not finished yet = segments waiting.
    PROCESSED `<id>.mp4` = finished video waiting for its upload
    (with Supabase, the outbox's queued uploads are added by the service: see Store.videos_waiting_for_upload)."""
    recordings: set[str] = set()
    segments = uploads = 0
    try:
        with os.scandir(raw_dir) as it:
            for entry in it:
                if not _visible(entry):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if os.path.isfile(os.path.join(entry.path, FINISHED_NAME)):  # a finished recording
                        recordings.add(entry.name)
                        continue
                    with os.scandir(entry.path) as parts:
                        segments += sum(1 for p in parts if _visible(p) and p.is_file())
                elif entry.name.endswith(VIDEO_SUFFIX):
                    recordings.add(entry.name[: -len(VIDEO_SUFFIX)])
    except FileNotFoundError:
        pass
    states = job_states(jobs_db) if jobs_db is not None else None
    if states is None:
        jobs = len(recordings)
    else:
        waiting = {booking for booking, state in states.items() if state == JobState.pending}
        jobs = len(waiting | {booking for booking in recordings if booking not in states})
    try:
        with os.scandir(processed_dir) as it:
            uploads = sum(1 for e in it if _visible(e) and e.name.endswith(VIDEO_SUFFIX)
                          and (e.is_file() or spliced_file.is_splice(Path(e.path))))  # a file or a splice
    except FileNotFoundError:
        pass
    return QueueCounts(jobs_waiting=jobs, segments_waiting=segments, uploads_pending=uploads)


def _ref(booking: ScheduledBooking) -> BookingRef:
    return BookingRef(id=booking.id, user_id=booking.user_id, start_time=booking.start_time,
                      end_time=booking.end_time)


def bookings_around(snapshot: ScheduleSnapshot | None, now: datetime,
                    recording_now: str | None = None) -> tuple[BookingRef | None, BookingRef | None]:
    """(current, next): a confirmed booking whose slot contains `now`, the earliest confirmed one after it."""
    if snapshot is None:
        return None, None
    current = next_up = None
    for b in sorted(snapshot.bookings, key=lambda b: b.start_time):
        to_record = b.status == BookingStatus.confirmed or b.id == recording_now
        if not to_record:
            continue
        if b.start_time <= now < b.end_time and current is None:
            current = _ref(b)
        elif b.start_time > now and next_up is None:
            next_up = _ref(b)
    return current, next_up


class PipelineTracker:
    """Bus handlers (called on paho's thread) plus a consistent view for the collector thread."""

    def __init__(self, camera_id: str, state_path: Path, cache_path: Path | None = None) -> None:
        self.camera_id = camera_id
        self.state_path = state_path
        self._lock = threading.Lock()
        self._schedule: ScheduleSnapshot | None = None
        self._memory = self._load()
        if cache_path is not None:
            self._load_cache(cache_path)

    # ---- persistence -----------------------------------------------------------------------------

    def _load(self) -> PipelineMemory:
        try:
            return PipelineMemory.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return PipelineMemory()
        except (OSError, ValidationError) as exc:
            log.warning("ignoring unreadable %s: %s", self.state_path, exc)
            return PipelineMemory()

    def _save(self) -> None:
        """Called with the lock held; events are rare, so a write per event is cheap."""
        try:
            write_text_atomic(self.state_path, self._memory.model_dump_json())
        except OSError:
            log.exception("could not save %s", self.state_path)

    def _load_cache(self, path: Path) -> None:
        """Until the retained schedule arrives (or if the broker lost it), the device's bookings cache."""
        try:
            snapshot = read_cache(path)
        except CacheFormatError as exc:
            log.warning("bookings cache unusable: %s", exc)
            return
        if snapshot is not None and snapshot.camera_id == self.camera_id:
            self._schedule = snapshot

    # ---- bus handlers ----------------------------------------------------------------------------

    def on_bookings(self, topic: str, snapshot: ScheduleSnapshot) -> None:
        """The same revision rules as the recorder (shared/schedule_revision.py): one implausible revision
        must not freeze the bookings this service reports."""
        if snapshot.camera_id != self.camera_id:
            return
        with self._lock:
            held = self._schedule
            verdict = judge_revision(held.revision if held else None, snapshot.revision)
            if verdict.accept:
                self._schedule = snapshot
        if not verdict.accept:
            log.log(logging.WARNING if verdict.warn else logging.INFO, "ignored schedule revision %d from %s: %s",
                    snapshot.revision, topic, verdict.reason)
        elif verdict.warn:
            log.warning("schedule revision %d from %s: %s", snapshot.revision, topic, verdict.reason)

    def on_recording_started(self, _topic: str, event: RecordingStarted) -> None:
        with self._lock:
            self._memory.recording_now = event.booking_id
            self._memory.camera_fault = None  # frames are arriving: the camera works
            self._save()

    def on_recording_finished(self, _topic: str, event: RecordingFinished) -> None:
        with self._lock:
            if self._memory.recording_now == event.booking_id:
                self._memory.recording_now = None
                self._save()

    def on_video_failed(self, topic: str, event: VideoFailed) -> None:
        reason = f"{event.element}: {event.reason}"[:REASON_LIMIT]
        self._error("worker", ServiceError(at=event.sent_at, topic=topic, reason=reason, booking_id=event.booking_id))

    def on_deadletter(self, _topic: str, letter: DeadLetter) -> None:
        parts = letter.topic.split("/")
        if len(parts) > 2 and parts[0] == ROOT and parts[1] not in (self.camera_id, "media"):
            return  # another camera's message on a shared broker
        service = letter.service if letter.service in SERVICES else OTHER
        self._error(service, ServiceError(at=letter.sent_at, topic=letter.topic, reason=letter.error))

    def on_recorder_fault(self, topic: str, fault: RecorderFault) -> None:
        """A validated RecorderFault (junk is dead-lettered by the bus); camera kinds fault the camera."""
        if fault.camera_id != self.camera_id:
            log.warning("ignoring a recorder fault for camera %s on %s", fault.camera_id, topic)
            return
        now = utc_now()
        reason = fault.reason[:REASON_LIMIT]
        with self._lock:
            if fault.kind.startswith("camera"):
                self._memory.camera_fault = CameraFault(reason=reason, at=now) if fault.active else None
            if fault.active:
                self._memory.last_errors["recorder"] = service_error(ServiceError(
                    at=now, topic=topic, reason=f"{fault.kind}: {reason}", booking_id=fault.booking_id))
            self._save()

    def _error(self, service: str, error: ServiceError) -> None:
        with self._lock:
            self._memory.last_errors[service] = service_error(error)
            self._save()

    # ---- view ------------------------------------------------------------------------------------

    def view(self, now: datetime, recorder_says: tuple[str | None] | None = None) -> PipelineView:
        """`recorder_says`: (booking being recorded or None) from the recorder's fresh heartbeat, which wins
        over what the events told (one can be lost, or arrive before this service subscribed)."""
        with self._lock:
            memory = self._memory.model_copy(deep=True)
            schedule = self._schedule
        recording_now = recorder_says[0] if recorder_says is not None else memory.recording_now
        current, next_up = bookings_around(schedule, now, recording_now)
        return PipelineView(
            recording_now=recording_now,
            current_booking=current,
            next_booking=next_up,
            camera_fault=memory.camera_fault.reason if memory.camera_fault else None,
            last_errors=memory.last_errors,
        )
