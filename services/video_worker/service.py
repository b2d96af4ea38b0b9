"""The video worker: segments and recordings in, finished videos uploaded; several may share one DATA_DIR.

Three loops per worker, each claiming rows of the shared job table under a lease:
- segments: process the next recorder segment (following one still being written), plus the
  recovery scan of RAW_RECORDINGS_DIR and media updates;
- jobs: make a booking's video: join its processed segments (streaming along with the last minutes
  of the recording) or process the whole recording;
- uploads: processed videos to the store, retried with backoff, local files removed once confirmed.
One encoder runs at a time per worker (ctx.encode_slot). Events arrive through MQTT v5 shared
subscriptions (`$share/workers/...`): each goes to one worker; all workers share the table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from services.video_worker.context import WorkerContext
from services.video_worker.finish_step import finish_job
from services.video_worker.highlights.loop import HighlightLoop
from services.video_worker.job_intake import Intake
from services.video_worker.job_table import Job, JobState, JobTable, LostLease
from services.video_worker.part_step import process_part
from services.video_worker.upload_step import upload_job
from shared.bus import MqttBus
from shared.job_states import TABLE_FILE
from shared.payloads import HighlightClip, MediaUpdated, RecordingFinished, RecordingSegment, RecordingStarted
from shared.settings import Settings
from shared.store import Store
from shared.topics import MEDIA_UPDATED

log = logging.getLogger(__name__)

SHARE_GROUP = "$share/workers/"
ERROR_PAUSE_S = 1.0


class VideoWorker:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus, jobs: JobTable) -> None:
        self.ctx = WorkerContext(settings, store, bus, jobs)
        self.intake = Intake(self.ctx)
        self.highlights = HighlightLoop(self.ctx)  # highlights/: clips players ask for, beside the booking's video
        self.current: dict[str, str] = {}  # loop -> what it works on (for the heartbeat)

    @property
    def jobs(self) -> JobTable:
        return self.ctx.jobs

    @property
    def wake(self) -> threading.Event:
        return self.ctx.wake

    def run(self, stop: threading.Event) -> None:
        """All loops until `stop`; returns once they have ended."""
        ctx = self.ctx
        ctx.stop = stop
        ctx.jobs.release_all(ctx.owners)  # rows a previous run of this worker held: free at once
        state_loops = [("worker-jobs", "jobs", JobState.pending, ctx.finish_owner, ctx.finish_wake, finish_job),
                       ("worker-upload", "uploads", JobState.processed, ctx.upload_owner, ctx.upload_wake, upload_job)]
        helpers = [*(threading.Thread(target=self._state_loop, args=(stop, *args), name=name, daemon=True)
                     for name, *args in state_loops),
                   self.highlights.thread(stop)]
        for thread in helpers:
            thread.start()
        try:
            self._segment_loop(stop)
        finally:
            ctx.finish_wake.set()
            ctx.upload_wake.set()
            self.highlights.wake.set()
            for thread in helpers:
                thread.join(timeout=60)

    # ---- loops -----------------------------------------------------------------------------------

    def _segment_loop(self, stop: threading.Event) -> None:
        ctx, owner = self.ctx, self.ctx.process_owner
        next_scan = 0.0
        while not stop.is_set():
            if time.time() >= next_scan:
                self._guard("scan", self.intake.scan)
                next_scan = time.time() + ctx.settings.video_worker_check_interval
            self._guard("media", self.intake.sync_media)
            try:
                part = ctx.jobs.claim_part(owner)
                if part is not None:
                    self._step("segments", f"{part.booking_id}/{part.idx}", lambda p=part: process_part(ctx, p),
                               lambda error, p=part: ctx.jobs.retry_part(p.booking_id, p.idx, owner, error))
                    continue
                wait = ctx.jobs.seconds_until_next_part(time.time())
            except Exception:  # the table itself failed (disk, lock timeout): pause, then carry on
                log.exception("segment loop")
                wait = ERROR_PAUSE_S
            self._sleep(ctx.wake, wait, next_scan - time.time())

    def _state_loop(self, stop: threading.Event, loop: str, state: JobState, owner: str, wake: threading.Event,
                    step: Callable[[WorkerContext, Job], None]) -> None:
        """The job loop (pending -> made) and the upload loop (processed -> uploaded): claim the next job in
        `state`, run `step` on it, else sleep until one is due or `wake` is set."""
        ctx = self.ctx
        while not stop.is_set():
            try:
                job = ctx.jobs.claim(owner, [state])
                if job is not None:
                    self._step(loop, job.booking_id, lambda j=job: step(ctx, j),
                               lambda error, j=job: ctx.jobs.retry_later(j.booking_id, owner, error))
                    continue
                wait = ctx.jobs.seconds_until_next([state], time.time())
            except Exception:  # the table itself failed (disk, lock timeout): pause, then carry on
                log.exception("%s loop", "job" if loop == "jobs" else "upload")
                wait = ERROR_PAUSE_S
            self._sleep(wake, wait, ctx.settings.video_worker_check_interval)

    @staticmethod
    def _sleep(event: threading.Event, due: float | None, cap: float) -> None:
        event.wait(max(0.05, min(due if due is not None else cap, cap)))
        event.clear()

    def _step(self, loop: str, what: str, step: Callable[[], None], on_error: Callable[[str], object]) -> None:
        """One failed step never ends the worker: the row is released and tried again later."""
        self.current[loop] = what
        try:
            step()
        except LostLease as exc:
            log.warning("%s: %s; another worker took it over", what, exc)
        except Exception as exc:
            log.exception("%s: step failed; will be tried again", what)
            error = f"{type(exc).__name__}: {exc}"
            self._guard(f"{what} release", lambda: on_error(error))
        finally:
            self.current.pop(loop, None)

    def _guard(self, what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except LostLease as exc:
            log.warning("%s: %s", what, exc)
        except Exception:
            log.exception("%s failed", what)


def subscriptions(bus: MqttBus, intake: Intake, highlights: HighlightLoop | None = None) -> None:
    """Recording events go to one worker of the group each (all workers share the table).

    Media updates go to every worker: the topic is not per camera, so its group would span every
    worker on the broker, and a member whose session outlives it (the broker keeps queueing to it)
    would swallow updates. Handling one twice costs nothing: the cache is content-addressed.
    """
    topics = bus.topics
    bus.subscribe(SHARE_GROUP + topics.recording_finished, RecordingFinished, intake.on_recording_finished)
    bus.subscribe(SHARE_GROUP + topics.recording_segment, RecordingSegment, intake.on_recording_segment)
    bus.subscribe(SHARE_GROUP + topics.recording_started, RecordingStarted, intake.on_recording_started)
    bus.subscribe(MEDIA_UPDATED, MediaUpdated, intake.on_media_updated)
    if highlights is not None:
        bus.subscribe(SHARE_GROUP + topics.highlight_clip, HighlightClip, highlights.on_clip)


def build(settings: Settings, store: Store, bus: MqttBus) -> VideoWorker:
    jobs = JobTable(settings.state_dir / TABLE_FILE, lease_s=settings.worker_lease_s)
    worker = VideoWorker(settings, store, bus, jobs)
    subscriptions(bus, worker.intake, worker.highlights)
    return worker
