"""The recorder: schedule -> camera session -> segments -> joined recording -> `recording/finished`.

One thread runs the schedule and the camera session; a single background thread closes segments
(flush + fsync), publishes their events and joins finished bookings, in submission order, so a
slow disk never holds up the frames.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import av

from services.recorder.camera import Camera, CameraError, CameraStalled, Captured, CapturedPacket, open_camera
from services.recorder.disk import MB, DiskGuard, FreeSpaceProbe
from services.recorder.faults import CAMERA_KINDS, RETRY_S, FaultReporter
from services.recorder.feed import CameraFeed
from services.recorder.highlight_button import Closeable, start_button
from services.recorder.highlight_presses import HighlightDesk
from services.recorder.logos import CaptureLogos, Geometry
from services.recorder.schedule_intake import LooseSchedule
from services.recorder.schedule_plan import active_at, camera_due, keep_camera, recordable, seconds_until_due
from services.recorder.schedule_source import ScheduleSource
from services.recorder.writer import EncodeSpec, SegmentWriter, capture_settings
from shared.backoff import StepBackoff
from shared.bus import MqttBus
from shared.media_cache import MediaCache
from shared.models import BookingStatus
from shared.overlay import PreparedLogo
from shared.payloads import (
    DeadLetter,
    MediaUpdated,
    RecordingFinished,
    RecordingSegment,
    RecordingStarted,
    ScheduledBooking,
)
from shared.recordings.layout import (
    BookingDir,
    BookingMeta,
    FinishedMeta,
    booking_dirs,
    joined_recording,
    stale_join_temps,
)
from shared.recordings.segments import (
    JoinResult,
    NothingRecorded,
    count_closed,
    describe_recording,
    describe_segments,
)
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now
from shared.topics import DEADLETTER, MEDIA_UPDATED

log = logging.getLogger(__name__)

CameraFactory = Callable[[], Camera]
KEEP_CAMERA_GRACE = timedelta(seconds=1)
LIVE_RETRY_S = 1.0
"""Longest wait between camera attempts while a booking is due (the backoff's steps reach 30 s)."""
GOP_LIMIT = 600
"""Packets kept since the last keyframe of a remuxed camera (its pre-roll for the next booking)."""


@dataclass
class Recording:
    """The booking the camera is recording now, and its open segment."""

    booking: ScheduledBooking
    dir: BookingDir
    meta: BookingMeta
    spec: EncodeSpec | None
    writer: SegmentWriter | None = None
    index: int = 0
    announced: bool = False


class Recorder:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus, source: ScheduleSource, *,
                 camera_factory: CameraFactory | None = None, disk_probe: FreeSpaceProbe | None = None,
                 logos: CaptureLogos | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.source = source
        self.camera_factory = camera_factory or (lambda: open_camera(settings))
        self.warmup = timedelta(seconds=settings.camera_warmup_s)
        self.segment_length = timedelta(seconds=settings.segment_seconds)
        self.faults = FaultReporter(bus, settings.camera_id)
        self.disk = DiskGuard(settings.raw_dir, settings.processed_dir, settings.min_free_disk_mb, store, disk_probe)
        self.recording_now: str | None = None
        self._done: set[str] = set()
        self._announced: set[str] = set()  # recording/finished sent by this run (a restart sends it again)
        self._given_up: set[str] = set()
        self._finalizing: set[str] = set()
        self._lock = threading.Lock()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder-io")
        self._backoff = StepBackoff(RETRY_S)
        self.highlights: HighlightDesk | None = None
        self.button: Closeable | None = None
        self.logos = logos or CaptureLogos(MediaCache(store, settings.media_dir))
        self._live_plan: list[ScheduledBooking] = []
        """The session's current plan, read by a camera that draws logos in its own callback (Picamera2)."""
        self._drawing: Geometry | None = None
        """The picture geometry of such a camera in this session; None when the recorder draws them itself."""

    # ---- planning --------------------------------------------------------------------------------

    def _is_done(self, booking_id: str) -> bool:
        if booking_id in self._done or joined_recording(self.settings.raw_dir, booking_id).exists() \
                or BookingDir(self.settings.raw_dir, booking_id).finished_path.exists():
            return True
        try:
            stored = self.store.get_booking(booking_id)
        except Exception as exc:  # an unreachable store must not stop a recording: the schedule decides
            log.warning("store unavailable while planning (%s); going by the schedule", exc)
            return False
        if stored is not None and stored.status != BookingStatus.confirmed:
            self._done.add(booking_id)
            return True
        return False

    def _plan(self, now: datetime) -> list[ScheduledBooking]:
        """`now` is the capture time of the frame at hand, so queued frames are judged by when they were taken."""
        snapshot = self.source.current()
        if snapshot is None:
            return []
        plan = recordable(snapshot.bookings, now, self._done, recording=self.recording_now)
        plan = [b for b in plan if not self._is_done(b.id)]
        self.logos.watch(plan)  # each user's logos fetched ahead of their booking (in the background)
        return plan

    # ---- main loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.source.check_file()
        self.source.watch(stop)
        # A stop request wakes the scheduler's wait at once (the schedule event is what it waits on).
        threading.Thread(target=lambda: (stop.wait(), self.source.changed.set()), name="recorder-stop",
                         daemon=True).start()
        for temp in stale_join_temps(self.settings.raw_dir):
            log.info("removing %s left by an interrupted join", temp.name)
            temp.unlink(missing_ok=True)
        try:
            while not stop.is_set():
                try:
                    self._step(stop)
                except Exception:  # never let one bad pass end the service; the next pass retries
                    log.exception("recorder pass failed")
                    stop.wait(self.settings.booking_check_interval)
        finally:
            if self.button is not None:
                self.button.close()  # frees the pin, so a restarted recorder can open it again
                self.button = None
            self._io.shutdown(wait=True)
            self.logos.close()

    def _step(self, stop: threading.Event) -> None:
        self.source.changed.clear()
        self.recover()
        now = utc_now()
        plan = self._plan(now)
        if camera_due(plan, now, self.warmup):
            if self._disk_ready(plan[0]):
                self._session(stop)
            else:
                stop.wait(self.settings.booking_check_interval)
            return
        wait = seconds_until_due(plan, now, self.warmup)
        self.source.changed.wait(min(self.settings.booking_check_interval, wait if wait is not None else 1e9))

    def _disk_ready(self, booking: ScheduledBooking) -> bool:
        if self.disk.ensure():
            self.faults.clear("disk_low")
            return True
        free_mb = self.disk.free_bytes() / MB
        self.faults.report("disk_low", f"{free_mb:.0f} MB free, below MIN_FREE_DISK_MB="
                           f"{self.settings.min_free_disk_mb}, and nothing uploaded left to remove; not recording",
                           booking_id=booking.id, repeat=False)
        return False

    # ---- camera session --------------------------------------------------------------------------

    def _retry_delay(self) -> float:
        """The backoff's next wait, capped at LIVE_RETRY_S while a booking is due: a camera back from an outage
        is picked up within a second, not after the 5-30 s the backoff reaches for one that stays away."""
        delay = self._backoff.next()
        now = utc_now()
        return min(delay, LIVE_RETRY_S) if camera_due(self._plan(now), now, self.warmup) else delay

    def _session(self, stop: threading.Event) -> None:
        """One camera session covering every booking that follows without a long pause."""
        try:
            camera = self.camera_factory()
        except Exception as exc:  # a busy, missing or misconfigured camera is a fault to retry, never a crash
            delay = self._retry_delay()
            due = self._plan(utc_now())
            self.faults.report("camera_open", str(exc), booking_id=due[0].id if due else None, retry_in_s=delay)
            stop.wait(delay)
            return
        self._drawing = _drawing_geometry(camera)
        if self._drawing is not None:
            camera.logo_source = self._logos_at  # type: ignore[attr-defined]
        feed = CameraFeed(camera, self.settings.camera_stall_s).start()
        rec: Recording | None = None
        gop: list[CapturedPacket] = []
        plan = self._plan(utc_now())
        healthy = False
        retry_in: float | None = None
        at: datetime | None = None
        try:
            while not stop.is_set():
                item = feed.get()
                if not healthy:
                    healthy = True
                    self._backoff.reset()
                    self.faults.clear(*CAMERA_KINDS)
                at = item.captured_at
                if isinstance(item, CapturedPacket):
                    gop = _track_gop(gop, item)
                if self.source.changed.is_set():
                    self.source.changed.clear()
                    plan = self._plan(at)  # an edited end or a cancellation takes effect on this frame
                self._live_plan = plan
                self._draw_ahead(plan, at)
                active = active_at(plan, at)
                if rec is not None and (active is None or active.id != rec.booking.id):
                    self._leave(rec, plan, at)
                    rec = None
                    plan = [b for b in plan if b.id not in self._done]
                    self._live_plan = plan
                    active = active_at(plan, at)
                if active is not None and rec is None:
                    if not self._disk_ready(active):
                        break
                    rec = self._begin(active, camera, item, gop)
                    continue
                if rec is not None:
                    if self._rotation_due(rec, item):
                        self._close_segment(rec)
                        if not self._disk_ready(rec.booking):
                            break  # stop cleanly: the closed segments stay and are joined at the end
                        self._open_segment(rec, camera)
                    self._write(rec, item)
                elif not keep_camera(plan, at, self.warmup, KEEP_CAMERA_GRACE):
                    break  # nothing due soon: release the camera
        except CameraError as exc:
            retry_in = self._retry_delay()
            kind = "camera_stall" if isinstance(exc, CameraStalled) else "camera_error"
            self.faults.report(kind, str(exc), booking_id=_booking_id(rec, plan), retry_in_s=retry_in)
        except (av.FFmpegError, OSError) as exc:
            retry_in = self._retry_delay()
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                self.faults.report("disk_low", f"disk full while recording: {exc}",
                                   booking_id=_booking_id(rec, plan), retry_in_s=retry_in)
            else:
                log.exception("recording failed")
                self.faults.report("camera_error", f"recording failed: {type(exc).__name__}: {exc}",
                                   booking_id=_booking_id(rec, plan), retry_in_s=retry_in)
        finally:
            if rec is not None:
                # Stopped mid-booking (shutdown, fault, disk): the segments stay; a later session resumes
                # into the same folder, or recover() joins them once the booking is over.
                self._close_segment(rec)
            self.recording_now = None
            feed.close()
            self._live_plan = []
        if retry_in is not None:
            stop.wait(retry_in)

    def _begin(self, booking: ScheduledBooking, camera: Camera, item: Captured,
               gop: list[CapturedPacket]) -> Recording:
        backlog: list[Captured] = list(gop) if isinstance(item, CapturedPacket) and gop else [item]
        booking_dir = BookingDir(self.settings.raw_dir, booking.id)
        meta = booking_dir.ensure_meta(booking, origin=backlog[0].captured_at)
        spec = None
        if camera.encoded is None:
            spec = EncodeSpec(camera.width, camera.height, camera.fps, capture_settings(self.settings),
                              logos=self.logos.fix(booking, booking_dir))
        rec = Recording(booking=booking, dir=booking_dir, meta=meta, spec=spec)
        self._open_segment(rec, camera)
        self.recording_now = booking.id
        for queued in backlog:
            self._write(rec, queued)
        return rec

    def _open_segment(self, rec: Recording, camera: Camera) -> None:
        rec.index, path = rec.dir.next_segment()
        log.info("recording %s into %s", rec.booking.id, rec.dir.relative(path))
        rec.writer = SegmentWriter(path, rec.meta.origin, encode=rec.spec,
                                   copy=camera.encoded if rec.spec is None else None,
                                   drawn_logos=self._drawn_fingerprint(rec.booking.id) if rec.spec is None else None)

    def _rotation_due(self, rec: Recording, item: Captured) -> bool:
        writer = rec.writer
        if writer is None or writer.first_at is None:
            return False
        if item.captured_at - writer.first_at < self.segment_length:
            return False
        return not isinstance(item, CapturedPacket) or item.keyframe  # remuxed segments start on a keyframe

    def _write(self, rec: Recording, item: Captured) -> None:
        if rec.writer is None or not rec.writer.write(item):
            return
        if not rec.announced and rec.writer.first_at is not None:
            rec.announced = True
            self.bus.publish(self.bus.topics.recording_started, RecordingStarted(
                booking_id=rec.booking.id, camera_id=self.settings.camera_id, first_frame_at=rec.writer.first_at))

    def _leave(self, rec: Recording, plan: list[ScheduledBooking], at: datetime) -> None:
        """The booking stopped owning the frames: over, cancelled, or moved."""
        self._close_segment(rec)
        self.recording_now = None
        current = next((b for b in plan if b.id == rec.booking.id), None)
        if current is None or at >= current.end_time:
            self._done.add(rec.booking.id)
            self.logos.forget(rec.booking.id)
            self._finalize_later(rec.booking.id, rec.booking)
        else:
            log.info("booking %s moved to %s; its segments wait", rec.booking.id, current.start_time.isoformat())

    def _close_segment(self, rec: Recording) -> None:
        writer, rec.writer = rec.writer, None
        if writer is not None:
            self._io.submit(self._finish_segment, writer, rec.booking, rec.dir, rec.index)

    def _finish_segment(self, writer: SegmentWriter, booking: ScheduledBooking, booking_dir: BookingDir,
                        index: int) -> None:
        try:
            writer.close()
        except Exception:
            log.exception("closing segment %s failed; it is joined up to its last whole fragment", writer.path)
            return
        if writer.frames == 0 or writer.first_at is None or writer.last_at is None:
            return
        self.bus.publish(self.bus.topics.recording_segment, RecordingSegment(
            booking_id=booking.id, camera_id=self.settings.camera_id, user_id=booking.user_id, index=index,
            file=booking_dir.relative(writer.path), start_at=writer.first_at, end_at=writer.last_at,
            frames=writer.frames, size_bytes=writer.size_bytes))
        log.info("booking %s: segment %d closed (%d frames)", booking.id, index, writer.frames)
        try:  # the end-of-booking count then reads no segment but the last
            count_closed(booking_dir.segments_through(index), writer.origin, booking_dir.tally_path)
        except Exception:  # the count at the booking's end reads them all instead: slower, same result
            log.exception("booking %s: segment %d not counted into the tally", booking.id, index)

    # ---- logos drawn by the camera (Picamera2's pre_callback) --------------------------------------

    def _draw_ahead(self, plan: list[ScheduledBooking], at: datetime) -> None:
        """Fix and prepare the logos of a booking about to start, off the camera's path: its callback only looks."""
        if self._drawing is None:
            return
        for booking in plan[:2]:
            if booking.start_time - at <= self.warmup and self.logos.held(booking.id) is None:
                fixed = self.logos.fix(booking, BookingDir(self.settings.raw_dir, booking.id))
                self.logos.prepare_later(fixed, self._drawing)

    def _logos_at(self, at: datetime) -> list[PreparedLogo]:
        """For the camera's callback (its own thread): the logos of the booking owning the frame taken at `at`."""
        geometry = self._drawing
        booking = active_at(self._live_plan, at)
        if booking is None or geometry is None:
            return []
        held = self.logos.held(booking.id)
        ready = held.ready(geometry) if held is not None else None
        return list(ready.logos) if ready is not None else []

    def _drawn_fingerprint(self, booking_id: str) -> str | None:
        held = self.logos.held(booking_id)
        if self._drawing is None or held is None:
            return None
        ready = held.ready(self._drawing)
        return ready.fingerprint if ready is not None else None

    # ---- finalising ------------------------------------------------------------------------------

    def _finalize_later(self, booking_id: str, booking: ScheduledBooking | None) -> None:
        with self._lock:
            if booking_id in self._finalizing:
                return
            self._finalizing.add(booking_id)
        self._io.submit(self._finalize, booking_id, booking)

    def _finalize(self, booking_id: str, booking: ScheduledBooking | None) -> None:
        try:
            self._finalize_now(booking_id, booking)
        except Exception:
            log.exception("finalising %s failed; will retry on the next recovery pass", booking_id)
        finally:
            with self._lock:
                self._finalizing.discard(booking_id)

    def _finalize_now(self, booking_id: str, booking: ScheduledBooking | None) -> None:
        """Idempotent: after a crash at any line, running it again reaches the same end state."""
        booking_dir = BookingDir(self.settings.raw_dir, booking_id)
        meta = booking_dir.read_meta()
        stored = self.store.get_booking(booking_id)
        if meta is not None:
            origin, user_id = meta.origin, meta.user_id
        elif booking is not None or stored is not None:
            known = booking or stored
            origin, user_id = known.start_time, known.user_id  # type: ignore[union-attr]
        else:
            log.error("cannot finalise %s: booking unknown; keeping %s", booking_id, booking_dir.path)
            self._given_up.add(booking_id)
            return
        segments = booking_dir.segments()
        finished = booking_dir.read_finished()
        if booking_dir.target.exists():  # joined by a recorder before issue 12 (or before a crash): its facts
            result = describe_recording(booking_dir.target)
            file = booking_dir.target.name
        elif finished is not None:  # counted before a crash or a restart: announced again (idempotent)
            result = JoinResult(path=booking_dir.path, frames=finished.frames,
                                first_frame_at=finished.first_frame_at, last_frame_at=finished.last_frame_at,
                                size_bytes=finished.size_bytes, segments=finished.segments)
            file = booking_id
        elif segments:
            try:
                # counted, not copied: the segments are the recording; the tally holds all but the last, normally
                result = describe_segments(segments, origin, booking_dir.tally_path)
            except NothingRecorded as exc:
                log.error("booking %s: %s; keeping %s", booking_id, exc, booking_dir.path)
                self._given_up.add(booking_id)
                return
            booking_dir.write_finished(FinishedMeta(
                frames=result.frames, first_frame_at=result.first_frame_at, last_frame_at=result.last_frame_at,
                size_bytes=result.size_bytes, segments=result.segments or len(segments)))
            file = booking_id
        else:
            self._done.add(booking_id)
            shutil.rmtree(booking_dir.path, ignore_errors=True)
            return
        self.store.advance_booking_status(booking_id, BookingStatus.completed)
        self.bus.publish(self.bus.topics.recording_finished, RecordingFinished(
            booking_id=booking_id, camera_id=self.settings.camera_id, user_id=user_id,
            file=file, first_frame_at=result.first_frame_at, last_frame_at=result.last_frame_at,
            frames=result.frames, size_bytes=result.size_bytes, segments=result.segments or len(segments)))
        if file != booking_id:
            shutil.rmtree(booking_dir.path, ignore_errors=True)  # only now: the joined file is durable
        self._done.add(booking_id)
        self._announced.add(booking_id)  # its segments stay: the worker removes them once the video is uploaded
        self.logos.forget(booking_id)
        log.info("booking %s recorded: %d frames from %d segments, %.1f MB", booking_id, result.frames,
                 result.segments or len(segments), result.size_bytes / 1e6)

    def recover(self) -> None:
        """Segments left by a crash, a fault or a stop whose booking is over (or gone) are joined now."""
        snapshot = self.source.current()
        live = {b.id: b for b in (snapshot.bookings if snapshot else [])}
        now = utc_now()
        for booking_dir in booking_dirs(self.settings.raw_dir):
            booking_id = booking_dir.booking_id
            with self._lock:
                busy = booking_id in self._finalizing
            if busy or booking_id == self.recording_now or booking_id in self._given_up \
                    or booking_id in self._announced:
                continue  # an announced booking's segments stay until the worker has uploaded its video
            scheduled = live.get(booking_id)
            still_on = (scheduled is not None and scheduled.status == BookingStatus.confirmed
                        and scheduled.end_time > now and booking_id not in self._done)
            if not still_on:
                self._finalize_later(booking_id, scheduled)


def _drawing_geometry(camera: Camera) -> Geometry | None:
    """A packet camera that blends logos in its own callback before its encoder says so (Picamera2)."""
    geometry = getattr(camera, "logo_geometry", None)
    return geometry if isinstance(geometry, Geometry) else None


def _booking_id(rec: Recording | None, plan: list[ScheduledBooking]) -> str | None:
    """The booking a fault hurts: the one being recorded, else the next one due."""
    if rec is not None:
        return rec.booking.id
    return plan[0].id if plan else None


def _track_gop(gop: list[CapturedPacket], item: CapturedPacket) -> list[CapturedPacket]:
    """Packets since the last keyframe: what a booking starting mid-GOP needs to begin decodable."""
    if item.keyframe:
        return [item]
    if item.after_gap or not gop or len(gop) >= GOP_LIMIT:
        return []
    gop.append(item)
    return gop


def build(settings: Settings, store: Store, bus: MqttBus, *, camera_factory: CameraFactory | None = None,
          disk_probe: FreeSpaceProbe | None = None) -> Recorder:
    def reject(origin: str, reason: str, text: str) -> None:
        bus.publish(DEADLETTER, DeadLetter(topic=origin, service="recorder", error=reason, payload=text))

    source = ScheduleSource(settings.bookings_cache_path, settings.camera_id, settings.max_booking_minutes, reject)
    bus.subscribe(bus.topics.bookings, LooseSchedule, source.on_mqtt)
    logos = CaptureLogos(MediaCache(store, settings.media_dir))
    bus.subscribe(MEDIA_UPDATED, MediaUpdated, logos.on_media_updated)
    recorder = Recorder(settings, store, bus, source, camera_factory=camera_factory, disk_probe=disk_probe,
                        logos=logos)
    # Highlights: presses are judged against what is being recorded and published; the recording is not touched.
    recorder.highlights = HighlightDesk(settings, bus, lambda: recorder.recording_now, source.current)
    bus.subscribe_retained(bus.topics.highlight_request, recorder.highlights.on_mqtt, empty_ok=True)
    recorder.button = start_button(settings.highlight_gpio_pin, recorder.highlights.on_button)
    return recorder

