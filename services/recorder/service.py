"""The recorder: schedule -> capture -> join -> publish."""

from __future__ import annotations

import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from services.recorder.camera import Camera, CameraError, open_camera
from services.recorder.join import NothingRecorded, describe_recording, join_parts, part_files
from services.recorder.plan import active_at, recordable
from services.recorder.source import ScheduleSource
from services.recorder.writer import PartWriter
from shared.bus import MqttBus
from shared.models import BookingStatus
from shared.payloads import RecordingFinished, RecordingStarted, ScheduledBooking, ScheduleSnapshot
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now

log = logging.getLogger(__name__)

CAMERA_RETRY_S = (1, 2, 5, 10, 30)


class Recorder:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus, source: ScheduleSource) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.source = source
        self.warmup = timedelta(seconds=settings.camera_warmup_s)
        self.recording_now: str | None = None
        self._done: set[str] = set()
        self._finalizing: set[str] = set()
        self._lock = threading.Lock()
        self._finalizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finalize")
        self._camera_failures = 0

    # ---- planning --------------------------------------------------------------------------------

    def _is_done(self, booking_id: str) -> bool:
        if booking_id in self._done or (self.settings.raw_dir / f"{booking_id}.mp4").exists():
            return True
        stored = self.store.get_booking(booking_id)
        if stored is not None and stored.status != BookingStatus.confirmed:
            self._done.add(booking_id)
            return True
        return False

    def _plan(self) -> list[ScheduledBooking]:
        snapshot = self.source.current()
        if snapshot is None:
            return []
        now = utc_now()
        plan = recordable(snapshot.bookings, now, self._done)
        return [b for b in plan if not self._is_done(b.id)]

    # ---- main loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.source.check_file()
        while not stop.is_set():
            self.source.check_file()
            self.recover()
            plan = self._plan()
            now = utc_now()
            if plan and plan[0].start_time - self.warmup <= now:
                self._capture(plan, stop)
                continue
            wait = self.settings.booking_check_interval
            if plan:
                wait = min(wait, max(0.0, (plan[0].start_time - self.warmup - now).total_seconds()))
            self.source.changed.wait(wait)
            self.source.changed.clear()
        self._finalizer.shutdown(wait=True)

    def _capture(self, plan: list[ScheduledBooking], stop: threading.Event) -> None:
        """One camera session covering every booking that follows without a long pause."""
        try:
            camera = open_camera(self.settings.camera_source, self.settings.camera_width,
                                 self.settings.camera_height, self.settings.camera_fps)
        except CameraError as exc:
            delay = CAMERA_RETRY_S[min(self._camera_failures, len(CAMERA_RETRY_S) - 1)]
            self._camera_failures += 1
            log.error("camera unavailable (%s); retrying in %ss", exc, delay)
            stop.wait(delay)
            return
        self._camera_failures = 0
        writer: PartWriter | None = None
        owner: ScheduledBooking | None = None
        try:
            for captured in camera.frames():
                if stop.is_set():
                    break
                if self.source.changed.is_set():
                    self.source.changed.clear()
                    plan = self._plan()  # an edited end or a cancellation takes effect on the next frame
                at = captured.captured_at
                active = active_at(plan, at)
                if writer is not None and owner is not None and (active is None or active.id != owner.id):
                    self._close(writer, owner)
                    writer, owner = None, None
                    plan = [b for b in plan if b.id not in self._done]
                    active = active_at(plan, at)
                if active is not None and writer is None:
                    writer, owner = self._open(camera, active), active
                if writer is not None and owner is not None:
                    first = writer.frames == 0
                    writer.write(captured.frame, at)
                    if first and writer.first_at is not None:
                        self.bus.publish(self.bus.topics.recording_started, RecordingStarted(
                            booking_id=owner.id, camera_id=self.settings.camera_id,
                            first_frame_at=writer.first_at))
                elif not plan or plan[0].start_time - self.warmup > at + timedelta(seconds=1):
                    break  # nothing due soon: release the camera
        except CameraError as exc:
            log.error("camera failed mid-session: %s", exc)
        finally:
            if writer is not None and owner is not None:
                # Stopped mid-booking (shutdown or fault): keep the part; a restart adds the next one.
                writer.close()
                if owner.end_time <= utc_now():
                    self._finalize_later(owner)
            camera.close()
            self.recording_now = None

    def _open(self, camera: Camera, booking: ScheduledBooking) -> PartWriter:
        booking_dir = self.settings.raw_dir / booking.id
        index = len(part_files(booking_dir))
        path = booking_dir / f"part-{index:04d}.mp4"
        log.info("recording %s into %s", booking.id, path)
        self.recording_now = booking.id
        return PartWriter(path, width=camera.width, height=camera.height, fps=camera.fps,
                          origin=booking.start_time)

    def _close(self, writer: PartWriter, booking: ScheduledBooking) -> None:
        writer.close()
        log.info("booking %s: part closed with %d frames", booking.id, writer.frames)
        self._done.add(booking.id)
        self.recording_now = None
        self._finalize_later(booking)

    # ---- finalising ------------------------------------------------------------------------------

    def _finalize_later(self, booking: ScheduledBooking) -> None:
        with self._lock:
            if booking.id in self._finalizing:
                return
            self._finalizing.add(booking.id)
        self._finalizer.submit(self._finalize, booking.id, booking.user_id, booking)

    def _finalize(self, booking_id: str, user_id: str, booking: ScheduledBooking | None) -> None:
        try:
            self._finalize_now(booking_id, user_id, booking)
        except Exception:
            log.exception("finalising %s failed; will retry on the next recovery pass", booking_id)
        finally:
            with self._lock:
                self._finalizing.discard(booking_id)

    def _finalize_now(self, booking_id: str, user_id: str, booking: ScheduledBooking | None) -> None:
        """Idempotent: after a crash at any line, running it again reaches the same end state."""
        booking_dir = self.settings.raw_dir / booking_id
        target = self.settings.raw_dir / f"{booking_id}.mp4"
        stored = self.store.get_booking(booking_id)
        origin = booking.start_time if booking else (stored.start_time if stored else None)
        if origin is None:
            log.error("cannot finalise %s: booking unknown; keeping %s", booking_id, booking_dir)
            return
        parts = part_files(booking_dir)
        if parts:
            try:
                result = join_parts(parts, target, origin)
            except NothingRecorded as exc:
                log.error("booking %s: %s", booking_id, exc)
                return
        elif target.exists():
            result = describe_recording(target, origin)  # joined before a crash: re-read its facts
        else:
            return
        self.store.advance_booking_status(booking_id, BookingStatus.completed)
        self.bus.publish(self.bus.topics.recording_finished, RecordingFinished(
            booking_id=booking_id, camera_id=self.settings.camera_id, user_id=user_id,
            file=target.name, first_frame_at=result.first_frame_at, last_frame_at=result.last_frame_at,
            frames=result.frames, size_bytes=result.size_bytes))
        shutil.rmtree(booking_dir, ignore_errors=True)
        self._done.add(booking_id)
        log.info("booking %s recorded: %d frames, %.1f MB", booking_id, result.frames, result.size_bytes / 1e6)

    def recover(self) -> None:
        """Parts left by a crash or stop whose booking is over (or gone) get joined now."""
        raw = self.settings.raw_dir
        if not raw.exists():
            return
        snapshot = self.source.current()
        live = {b.id: b for b in (snapshot.bookings if snapshot else [])}
        now = utc_now()
        for booking_dir in sorted(p for p in raw.iterdir() if p.is_dir()):
            booking_id = booking_dir.name
            if booking_id in self._finalizing or booking_id == self.recording_now:
                continue
            scheduled = live.get(booking_id)
            if scheduled is not None and scheduled.end_time > now:
                continue  # still on: the capture loop will add a part
            stored = self.store.get_booking(booking_id)
            user_id = scheduled.user_id if scheduled else (stored.user_id if stored else None)
            if user_id is None:
                continue
            with self._lock:
                self._finalizing.add(booking_id)
            self._finalizer.submit(self._finalize, booking_id, user_id, scheduled)


def build(settings: Settings, store: Store, bus: MqttBus) -> Recorder:
    source = ScheduleSource(settings.bookings_cache_path, settings.camera_id)
    bus.subscribe(bus.topics.bookings, ScheduleSnapshot, source.on_mqtt)
    return Recorder(settings, store, bus, source)
