"""Where the recorder learns its schedule: retained MQTT snapshots and the bookings cache file.

Whichever carries the newer revision wins (shared/schedule_revision.py), so a stale file never overrides
a newer snapshot and the recorder still has a schedule when the broker is unreachable. A revision
implausibly far ahead of the clock is refused (and dead-lettered), so one forged or mis-clocked snapshot
cannot hide every later one; each snapshot ignored is logged with the reason. A booking under way that
a newer snapshot no longer lists is kept until its end: the API ends a booking by moving its end, never
by dropping it mid-slot, so only a snapshot from a store that lost it (wiped, restored, another API)
drops it, and the player's recording must not end for that.
Every accepted change sets `changed` at once, which wakes the scheduler (no polling delay); a small
watcher thread notices cache-file edits within a fraction of a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from services.recorder.schedule_intake import PAYLOAD_TEXT_LIMIT, LooseSchedule, judge, read_cache_loose
from shared.models import BookingStatus
from shared.payloads import ScheduledBooking, ScheduleSnapshot
from shared.schedule_cache import CacheFormatError
from shared.schedule_revision import judge_revision
from shared.timeutil import utc_now

log = logging.getLogger(__name__)

RejectHandler = Callable[[str, str, str], None]
"""(origin topic or file:<path>, reason, offending payload text)"""

FILE_WATCH_INTERVAL_S = 0.2


class ScheduleSource:
    def __init__(self, cache_path: Path, camera_id: str, max_booking_minutes: int,
                 on_reject: RejectHandler | None = None) -> None:
        self.cache_path = cache_path
        self.camera_id = camera_id
        self.max_booking_minutes = max_booking_minutes
        self.on_reject = on_reject
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: ScheduleSnapshot | None = None
        self._cache_stamp: tuple[float, int] | None = None

    def current(self) -> ScheduleSnapshot | None:
        with self._lock:
            return self._snapshot

    def offer(self, loose: LooseSchedule, origin: str) -> bool:
        """Take the schedule if it is newer; its malformed bookings are reported, the rest kept."""
        if loose.camera_id != self.camera_id:
            log.warning("ignoring schedule for camera %s from %s", loose.camera_id, origin)
            return False
        now = utc_now()
        kept: list[ScheduledBooking] = []
        with self._lock:
            held = self._snapshot
            verdict = judge_revision(held.revision if held else None, loose.revision, now)
            if verdict.accept:
                snapshot, rejected = judge(loose, self.max_booking_minutes)
                if held is not None:
                    snapshot, kept = keep_under_way(held, snapshot, now)
                self._snapshot = snapshot
        if not verdict.accept:
            log.log(logging.WARNING if verdict.warn else logging.INFO, "ignored schedule revision %d from %s: %s",
                    loose.revision, origin, verdict.reason)
            if verdict.implausible:
                text = loose.model_dump_json()[:PAYLOAD_TEXT_LIMIT]
                self._report(origin, f"schedule ignored: {verdict.reason}", text)
            return False
        if verdict.warn:
            log.warning("schedule revision %d from %s: %s", loose.revision, origin, verdict.reason)
        for booking in kept:
            log.warning("booking %s is under way (until %s) but missing from revision %d from %s; kept until its "
                        "end", booking.id, booking.end_time.isoformat(), loose.revision, origin)
        for bad in rejected:
            log.error("rejected a booking from %s: %s (%s)", origin, bad.reason, bad.text[:200])
            self._report(origin, f"invalid booking: {bad.reason}", bad.text)
        log.info("schedule revision %d from %s: %d bookings", snapshot.revision, origin, len(snapshot.bookings))
        self.changed.set()
        return True

    def on_mqtt(self, topic: str, loose: LooseSchedule) -> None:
        self.offer(loose, topic)

    def check_file(self) -> None:
        """Cheap when nothing changed: only re-reads the file when its mtime or size moves."""
        try:
            st = self.cache_path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._cache_stamp:
            return
        self._cache_stamp = stamp
        origin = f"file:{self.cache_path}"
        try:
            loose = read_cache_loose(self.cache_path)
        except CacheFormatError as exc:
            log.error("bookings cache unusable: %s", exc)
            self._report(origin, f"bookings cache unusable: {exc}", _head(self.cache_path))
            return
        if loose is not None:
            self.offer(loose, origin)

    def watch(self, stop: threading.Event, interval: float = FILE_WATCH_INTERVAL_S) -> threading.Thread:
        def _loop() -> None:
            while not stop.wait(interval):
                try:
                    self.check_file()
                except Exception:  # a watcher bug must not stop the recorder; the run loop re-checks too
                    log.exception("checking the bookings cache failed")

        thread = threading.Thread(target=_loop, name="schedule-watch", daemon=True)
        thread.start()
        return thread

    def _report(self, origin: str, reason: str, text: str) -> None:
        if self.on_reject is None:
            return
        try:
            self.on_reject(origin, reason, text)
        except Exception:
            log.exception("could not report a rejected schedule entry")


def keep_under_way(held: ScheduleSnapshot, new: ScheduleSnapshot,
                   now: datetime) -> tuple[ScheduleSnapshot, list[ScheduledBooking]]:
    """`new`, plus the confirmed bookings of `held` that are under way at `now` and that `new` lacks."""
    listed = {b.id for b in new.bookings}
    kept = [b for b in held.bookings if b.id not in listed and b.status == BookingStatus.confirmed
            and b.start_time <= now < b.end_time]
    if not kept:
        return new, []
    return new.model_copy(update={"bookings": [*new.bookings, *kept]}), kept


def _head(path: Path, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
