"""Bookings created in Supabase reach the device; users' media follows their settings.

Runs in the API process (it owns the schedule publisher): every BOOKINGS_POLL_INTERVAL_S it mirrors the
camera's bookings from the cloud into the local store and, when anything changed, rewrites the bookings
cache file and the retained MQTT snapshot, which stay the recorder's source of truth while offline. For
every user with an upcoming booking it refreshes their settings and fetches their intro and logos into
the store's mirror ahead of time (so an offline worker has them), and announces a change on
`ezrec/media/updated` so the worker drops cached files the settings no longer name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.bus import MqttBus
from shared.models import BookingStatus, UserSettings
from shared.payloads import MediaUpdated
from shared.settings import Settings
from shared.store.base import Store, StoreError
from shared.timeutil import utc_now
from shared.topics import MEDIA_UPDATED

log = logging.getLogger(__name__)


def _changed_kind(before: UserSettings | None, after: UserSettings) -> tuple[str, str | None]:
    if before is None or before.intro_video_path != after.intro_video_path:
        return "intro", after.intro_video_path
    if before.logo_path != after.logo_path or before.logo_placement != after.logo_placement:
        return "logo", after.logo_path
    return "sponsor_logo", (after.sponsor_logo_paths or [None])[0]


class CloudSync:
    def __init__(self, store, camera_id: str, interval_s: float, on_bookings_changed: Callable[[], None],
                 on_media_changed: Callable[[str, str, str | None], None]) -> None:
        self.store, self.camera_id, self.interval_s = store, camera_id, interval_s
        self.on_bookings_changed, self.on_media_changed = on_bookings_changed, on_media_changed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_ok: float | None = None

    def poll_once(self) -> bool:
        """One round; True when the schedule changed. Raises StoreError (CloudUnavailable) when offline."""
        changed = self.store.pull_bookings(self.camera_id)
        if changed:
            self.on_bookings_changed()
        upcoming = self.store.list_bookings(camera_id=self.camera_id, ends_after=utc_now(),
                                            status=BookingStatus.confirmed)
        for user_id in sorted({b.user_id for b in upcoming}):
            before = self.store.local.get_user_settings(user_id)
            if self.store.refresh_user_media(user_id):
                after = self.store.local.get_user_settings(user_id)
                if after is not None and before is not None:
                    kind, path = _changed_kind(before, after)
                    self.on_media_changed(user_id, kind, path)
        self.last_ok = time.time()
        return changed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cloud-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.interval_s
            try:
                self.poll_once()
            except StoreError as exc:
                log.info("bookings not pulled from the cloud (%s); the cached schedule stays in force", exc)
                wait = max(wait, self.store.drainer.offline_until - time.monotonic())
            except Exception:
                log.exception("cloud sync round failed")
            self._stop.wait(wait)


def start_cloud_sync(settings: Settings, store: Store, bus: MqttBus,
                     on_bookings_changed: Callable[[], None]) -> CloudSync | None:
    """None unless the store is Supabase and BOOKINGS_SYNC is `poll`."""
    if not settings.supabase_url or settings.bookings_sync != "poll":
        return None
    from shared.store.cloud import SupabaseStore  # only importable with the `supabase` extra

    if not isinstance(store, SupabaseStore):
        return None

    def media_changed(user_id: str, kind: str, path: str | None) -> None:
        bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind=kind, path=path))  # type: ignore[arg-type]

    sync = CloudSync(store, settings.camera_id, settings.bookings_poll_interval_s, on_bookings_changed,
                     media_changed)
    sync.start()
    return sync
