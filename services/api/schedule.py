"""After every booking change: rewrite the cache file and publish the retained schedule snapshot.

Revisions come from the clock (shared/schedule_revision.py): a fresh store (wiped DATA_DIR, restored backup)
publishes above the snapshots made before it, with no counter to carry over.
"""

from __future__ import annotations

import logging
import threading

from shared.bus import MqttBus
from shared.schedule_cache import KEEP_PAST, build_snapshot, write_snapshot
from shared.schedule_revision import next_revision
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now

log = logging.getLogger(__name__)


class SchedulePublisher:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self._lock = threading.Lock()
        self._revisions: dict[str, int] = {}

    def publish(self, camera_id: str) -> None:
        with self._lock:
            bookings = self.store.list_bookings(camera_id=camera_id, ends_after=utc_now() - KEEP_PAST)
            if camera_id == self.settings.camera_id:
                snapshot = write_snapshot(self.settings.bookings_cache_path, camera_id, bookings)
            else:  # another camera on this broker: no cache file here, its revisions are kept in memory
                revision, restarted = next_revision(self._revisions.get(camera_id))
                if restarted:
                    log.warning("schedule for %s: %s", camera_id, restarted)
                snapshot = build_snapshot(camera_id, bookings, revision)
            self._revisions[camera_id] = snapshot.revision
            self.bus.publish(f"ezrec/{camera_id}/bookings", snapshot, retain=True)
            log.info("published schedule for %s: %d bookings (revision %d)", camera_id,
                     len(snapshot.bookings), snapshot.revision)
