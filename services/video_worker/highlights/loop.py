"""The worker's highlight thread: clips from the recorder's `highlight/clip` events, one at a time.

Its own thread, beside the segment, job and upload loops: a clip is a packet copy (milliseconds of CPU), so it
never waits behind a segment's encode; only a clip that must be transcoded takes the worker's encode slot.
"""

from __future__ import annotations

import logging
import threading

from services.video_worker.context import WorkerContext
from services.video_worker.highlights.clip import remove_leftovers, run_one
from services.video_worker.highlights.table import TABLE_FILE, ClipTable
from shared.payloads import HighlightClip

log = logging.getLogger(__name__)

IDLE_S = 1.0


class HighlightLoop:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.owner = f"{ctx.name}/highlights"
        self.table = ClipTable(ctx.settings.state_dir / TABLE_FILE, lease_s=max(30.0, ctx.settings.worker_lease_s))
        self.wake = threading.Event()
        self.current: str | None = None
        ctx.raw_wanted = self._raw_wanted  # the booking's segments stay until its clips are cut

    def _raw_wanted(self, booking_id: str) -> str | None:
        count = self.table.unfinished(booking_id)
        return f"{count} highlight clip(s) still to cut" if count else None

    def on_clip(self, _topic: str, clip: HighlightClip) -> None:
        """paho's thread: persist and return (the row is the durable record; the event may be redelivered)."""
        if clip.camera_id != self.ctx.settings.camera_id:
            return
        if self.table.add(clip):
            log.info("highlight %s of booking %s: %s .. %s (%d press(es))", clip.clip_id, clip.booking_id,
                     clip.start_at.isoformat(), clip.end_at.isoformat(), clip.presses)
            self.wake.set()

    def run(self, stop: threading.Event) -> None:
        try:
            remove_leftovers(self.ctx)
        except OSError as exc:
            log.warning("highlight leftovers not removed: %s", exc)
        while not stop.is_set():
            try:
                row = self.table.claim(self.owner)
                if row is not None:
                    self.current = f"{row.booking_id}/{row.clip_id}"
                    try:
                        run_one(self.ctx, self.table, row, self.owner)
                    finally:
                        self.current = None
                    continue
                wait = self.table.seconds_until_next()
            except Exception:  # the table itself failed (disk, lock): pause, then carry on
                log.exception("highlight loop")
                wait = IDLE_S
            self.wake.wait(max(0.05, min(IDLE_S, wait if wait is not None else IDLE_S)))
            self.wake.clear()

    def thread(self, stop: threading.Event) -> threading.Thread:
        return threading.Thread(target=self.run, args=(stop,), name="worker-highlights", daemon=True)
