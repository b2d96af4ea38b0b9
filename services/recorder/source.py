"""Where the recorder learns its schedule: retained MQTT snapshots and the bookings cache file.

Whichever carries the higher revision wins, so a stale file never overrides a newer snapshot
and the recorder still has a schedule when the broker is unreachable.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from shared.payloads import ScheduleSnapshot
from shared.schedule_cache import CacheFormatError, read_cache

log = logging.getLogger(__name__)


class ScheduleSource:
    def __init__(self, cache_path: Path, camera_id: str) -> None:
        self.cache_path = cache_path
        self.camera_id = camera_id
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: ScheduleSnapshot | None = None
        self._cache_mtime: float | None = None

    def current(self) -> ScheduleSnapshot | None:
        with self._lock:
            return self._snapshot

    def offer(self, snapshot: ScheduleSnapshot, origin: str) -> bool:
        """Take the snapshot if it is newer; wakes the scheduler at once (no polling delay)."""
        if snapshot.camera_id != self.camera_id:
            log.warning("ignoring schedule for camera %s from %s", snapshot.camera_id, origin)
            return False
        with self._lock:
            if self._snapshot is not None and snapshot.revision <= self._snapshot.revision:
                return False
            self._snapshot = snapshot
        log.info("schedule revision %d from %s: %d bookings", snapshot.revision, origin, len(snapshot.bookings))
        self.changed.set()
        return True

    def on_mqtt(self, _topic: str, snapshot: ScheduleSnapshot) -> None:
        self.offer(snapshot, "mqtt")

    def check_file(self) -> None:
        """Cheap when nothing changed: only re-reads the file when its mtime moves."""
        try:
            mtime = self.cache_path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._cache_mtime:
            return
        self._cache_mtime = mtime
        try:
            snapshot = read_cache(self.cache_path)
        except CacheFormatError as exc:
            log.error("bookings cache unusable: %s", exc)
            return
        if snapshot is not None:
            self.offer(snapshot, "cache file")
