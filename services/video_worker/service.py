"""The video worker: recording finished -> process (intro + logos, one encode) -> upload -> clean up."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av

from services.video_worker.jobs import Job, JobState, JobTable
from services.video_worker.media import MediaCache
from services.video_worker.pipeline import EncodeSettings, LogoSpec, RecordingUnreadable, process_video
from shared.bus import MqttBus
from shared.models import BookingStatus, Video, storage_path_for_video, video_id_for
from shared.payloads import (
    MediaUpdated,
    RecordingFinished,
    VideoFailed,
    VideoProcessed,
    VideoProgress,
    VideoUploaded,
)
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now
from shared.topics import MEDIA_UPDATED

log = logging.getLogger(__name__)

_CORNERS = ("top-right", "top-left", "bottom-right", "bottom-left")


class VideoWorker:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus, jobs: JobTable) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.jobs = jobs
        self.media = MediaCache(store, settings.media_dir)
        self.wake = threading.Event()
        self.current: str | None = None
        self.encode = EncodeSettings(codec=settings.encoder, preset=settings.encoder_preset,
                                     crf=settings.encoder_crf)

    # ---- intake: events are the fast path, the directory scan the recovery path ---------------

    def on_recording_finished(self, _topic: str, event: RecordingFinished) -> None:
        if event.camera_id != self.settings.camera_id:
            return
        if self.jobs.add(event.booking_id, event.user_id, event.file):
            log.info("job queued for booking %s", event.booking_id)
        self.wake.set()

    def on_media_updated(self, _topic: str, event: MediaUpdated) -> None:
        settings = self.store.get_user_settings(event.user_id)
        keep = set()
        if settings is not None:
            keep = {p for p in [settings.intro_video_path, settings.logo_path, *settings.sponsor_logo_paths] if p}
        self.media.drop_user(event.user_id, keep)

    def scan(self) -> None:
        raw_dir = self.settings.raw_dir
        if not raw_dir.exists():
            return
        for raw in sorted(raw_dir.glob("*.mp4")):
            booking_id = raw.stem
            if self.jobs.get(booking_id) is not None:
                continue
            booking = self.store.get_booking(booking_id)
            if booking is None:
                log.warning("recording %s has no booking in the store; leaving it", raw.name)
                continue
            if self.jobs.add(booking_id, booking.user_id, raw.name):
                log.info("recovered unprocessed recording %s", raw.name)

    # ---- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        next_scan = 0.0
        while not stop.is_set():
            now = time.time()
            if now >= next_scan:
                self.scan()
                next_scan = now + self.settings.video_worker_check_interval
            job = self.jobs.next_due(now)
            if job is None:
                wait = self.jobs.seconds_until_next(now)
                timeout = min(wait if wait is not None else 1e9, max(0.0, next_scan - now))
                self.wake.wait(timeout)
                self.wake.clear()
                continue
            self.current = job.booking_id
            try:
                self.step(job)
            finally:
                self.current = None

    def step(self, job: Job) -> None:
        if job.state == JobState.pending:
            self._process(job)
        elif job.state == JobState.processed:
            self._upload(job)

    def _paths(self, job: Job) -> tuple[Path, Path]:
        return self.settings.raw_dir / job.raw_file, self.settings.processed_dir / f"{job.booking_id}.mp4"

    def _process(self, job: Job) -> None:
        raw, output = self._paths(job)
        if output.exists():  # processed before a crash, state not yet saved
            self.jobs.set_state(job.booking_id, JobState.processed)
            return
        if not raw.exists():
            self.jobs.fail(job.booking_id, f"raw recording {raw.name} is missing")
            self.bus.publish(self.bus.topics.video_failed, VideoFailed(
                booking_id=job.booking_id, element="recording", reason="raw recording missing", final=True))
            return
        media = self.media.for_user(job.user_id)
        for problem in media.problems:
            log.warning("booking %s: %s", job.booking_id, problem)
            self.bus.publish(self.bus.topics.video_failed, VideoFailed(
                booking_id=job.booking_id, element="media", reason=problem))
        logos = [LogoSpec(path=p, corner=_CORNERS[i % len(_CORNERS)]) for i, p in enumerate(media.logos[:4])]
        last_tick = [0.0]

        def progress(percent: float, fps: float) -> None:
            if time.monotonic() - last_tick[0] >= 1.0:
                last_tick[0] = time.monotonic()
                self.bus.publish_transient(self.bus.topics.video_progress, VideoProgress(
                    booking_id=job.booking_id, percent=min(100.0, max(0.0, percent)), fps=max(0.0, fps)))

        started = time.monotonic()
        try:
            result = process_video(raw, output, intro=media.intro, logos=logos, encode=self.encode,
                                   progress=progress)
        except RecordingUnreadable as exc:
            log.error("booking %s: recording unreadable: %s (kept at %s)", job.booking_id, exc, raw)
            self.jobs.fail(job.booking_id, str(exc))
            self.bus.publish(self.bus.topics.video_failed, VideoFailed(
                booking_id=job.booking_id, element="recording", reason=str(exc), final=True))
            return
        except Exception as exc:
            delay = self.jobs.retry_later(job.booking_id, f"{type(exc).__name__}: {exc}")
            log.exception("booking %s: processing failed; retrying in %.0fs", job.booking_id, delay)
            return
        for warning in result.warnings:
            element = next((e for e in ("intro", "logo", "recording", "encoder") if warning.startswith(e)), "media")
            self.bus.publish(self.bus.topics.video_failed, VideoFailed(
                booking_id=job.booking_id, element=element, reason=warning))
        self.jobs.set_state(job.booking_id, JobState.processed)
        self.store.advance_booking_status(job.booking_id, BookingStatus.video_processed)
        self.bus.publish(self.bus.topics.video_processed, VideoProcessed(
            booking_id=job.booking_id, duration_s=result.duration_s, frames=result.frames,
            size_bytes=output.stat().st_size, warnings=result.warnings))
        log.info("booking %s processed in %.1fs: %d frames, %.1fs", job.booking_id,
                 time.monotonic() - started, result.frames, result.duration_s)

    def _upload(self, job: Job) -> None:
        """Local files go only after both the object and the videos row are confirmed."""
        raw, output = self._paths(job)
        if not output.exists():
            # Only reachable if someone removed the output: process again from the raw file.
            self.jobs.set_state(job.booking_id, JobState.pending)
            return
        booking = self.store.get_booking(job.booking_id)
        camera_id = booking.camera_id if booking else self.settings.camera_id
        path = storage_path_for_video(job.user_id, job.booking_id)
        try:
            info = self.store.put_object("videos", path, output, "video/mp4")
            video = self.store.upsert_video(Video(
                id=video_id_for(job.booking_id), booking_id=job.booking_id, user_id=job.user_id,
                camera_id=camera_id, storage_path=path, size_bytes=info.size_bytes,
                duration_seconds=_duration(output), uploaded_at=utc_now()))
        except Exception as exc:
            delay = self.jobs.retry_later(job.booking_id, f"{type(exc).__name__}: {exc}")
            log.warning("booking %s: upload failed (%s); retrying in %.0fs", job.booking_id, exc, delay)
            self.bus.publish(self.bus.topics.video_failed, VideoFailed(
                booking_id=job.booking_id, element="upload", reason=str(exc)))
            return
        self.store.advance_booking_status(job.booking_id, BookingStatus.video_uploaded)
        self.bus.publish(self.bus.topics.video_uploaded, VideoUploaded(
            booking_id=job.booking_id, video_id=video.id, storage_path=path, size_bytes=info.size_bytes))
        self.jobs.set_state(job.booking_id, JobState.done)
        output.unlink(missing_ok=True)
        raw.unlink(missing_ok=True)
        log.info("booking %s uploaded to videos/%s", job.booking_id, path)


def _duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration or 0) / 1_000_000


def build(settings: Settings, store: Store, bus: MqttBus) -> VideoWorker:
    jobs = JobTable(settings.state_dir / "worker-jobs.db")
    worker = VideoWorker(settings, store, bus, jobs)
    bus.subscribe(bus.topics.recording_finished, RecordingFinished, worker.on_recording_finished)
    bus.subscribe(MEDIA_UPDATED, MediaUpdated, worker.on_media_updated)
    return worker
