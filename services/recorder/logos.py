"""The booking's logos, drawn into its frames before their one encode.

Three stages, so nothing slow ever runs in the camera's path:
- fetched ahead: a user's logos are fetched into the media cache (verified against the content hash in
  their names) when one of their bookings appears in the schedule, and again when `media/updated` says
  their media changed (and every MEDIA_REFRESH_S, in case such a message was missed);
- fixed at the booking's start: the files then in the cache are the booking's logos for good, written to
  the booking's `.logos.json` so a resumed session draws the same ones;
- prepared once per booking: premultiplied Y/U/V planes of the logo region (shared/overlay.py), so each
  frame costs a blend of a few thousand bytes.

A logo that fails to load is skipped with a warning; the recording never depends on it. The fingerprint
stamped on each segment names exactly the logos that were drawn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shared.capture_stamp import NO_LOGOS, logo_fingerprint
from shared.media_cache import MediaCache
from shared.overlay import LogoSpec, PreparedLogo, load_logos
from shared.payloads import MediaUpdated, ScheduledBooking
from shared.recordings.layout import BookingDir

log = logging.getLogger(__name__)

MEDIA_REFRESH_S = 600.0
"""A user's media is fetched again this long after the last fetch (a missed media/updated heals)."""
MEDIA_RETRY_S = 30.0
"""... and this soon after a failed one (store unreachable)."""


@dataclass(frozen=True)
class Geometry:
    """What a logo is prepared for: the picture's size, matrix and range."""

    width: int
    height: int
    bt709: bool
    full_range: bool


@dataclass(frozen=True)
class PreparedSet:
    logos: tuple[PreparedLogo, ...]
    fingerprint: str


NONE = PreparedSet((), NO_LOGOS)


@dataclass
class BookingLogos:
    """One booking's logos, fixed at its start, prepared once per picture geometry."""

    booking_id: str
    specs: list[LogoSpec]
    _prepared: dict[Geometry, PreparedSet] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, geometry: Geometry) -> PreparedSet:
        with self._lock:
            cached = self._prepared.get(geometry)
            if cached is None:
                cached = self._prepared[geometry] = self._load(geometry)
            return cached

    def ready(self, geometry: Geometry) -> PreparedSet | None:
        """The prepared set if it exists already (for a camera callback, which must never wait)."""
        return self._prepared.get(geometry)

    def _load(self, geometry: Geometry) -> PreparedSet:
        if not self.specs:
            return NONE
        warnings: list[str] = []  # load_logos logs each skipped logo itself
        try:
            prepared = load_logos(self.specs, geometry.width, geometry.height, warnings, bt709=geometry.bt709,
                                  full_range=geometry.full_range)
            drawn = {p.name for p in prepared}
            fingerprint = logo_fingerprint([s for s in self.specs if Path(s.path).name in drawn])
        except Exception as exc:  # a logo never costs the recording
            log.warning("booking %s: logos unusable (%s: %s); recording without them", self.booking_id,
                        type(exc).__name__, exc)
            return NONE
        if prepared:
            log.info("booking %s: %d logo(s) drawn at capture (%s)", self.booking_id, len(prepared),
                     ", ".join(p.name for p in prepared))
        return PreparedSet(tuple(prepared), fingerprint)


class CaptureLogos:
    """Users' logo files kept current ahead of their bookings; each booking's set fixed at its start."""

    def __init__(self, cache: MediaCache, *, refresh_s: float = MEDIA_REFRESH_S,
                 retry_s: float = MEDIA_RETRY_S) -> None:
        self.cache = cache
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._specs: dict[str, list[LogoSpec]] = {}
        self._next_fetch: dict[str, float] = {}
        self._pending: set[str] = set()
        self._bookings: dict[str, BookingLogos] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder-media")

    # ---- fetching (background) -------------------------------------------------------------------

    def watch(self, bookings: Iterable[ScheduledBooking]) -> None:
        """Cheap enough for every schedule change: only submits fetches that are due."""
        now = time.monotonic()
        for user_id in {b.user_id for b in bookings}:
            with self._lock:
                due = user_id not in self._pending and self._next_fetch.get(user_id, 0.0) <= now
            if due:
                self._submit(user_id)

    def on_media_updated(self, topic: str, event: MediaUpdated) -> None:
        """Someone changed a user's media: fetch again if we care about that user."""
        with self._lock:
            known = event.user_id in self._next_fetch
        if known:
            self._submit(event.user_id)

    def _submit(self, user_id: str) -> None:
        with self._lock:
            if user_id in self._pending:
                return
            self._pending.add(user_id)
        self._executor.submit(self._fetch, user_id)

    def _fetch(self, user_id: str) -> None:
        retry = False
        try:
            media = self.cache.for_user(user_id)
            for problem in media.problems:
                log.warning("media of %s: %s", user_id, problem)
            retry = bool(media.problems)
            with self._lock:
                if not any(p.startswith("user settings unavailable") for p in media.problems):
                    self._specs[user_id] = list(media.logo_specs)
        except Exception:  # the next schedule change or refresh tries again
            log.exception("fetching the media of %s failed", user_id)
            retry = True
        finally:
            with self._lock:
                self._pending.discard(user_id)
                self._next_fetch[user_id] = time.monotonic() + (self.retry_s if retry else self.refresh_s)

    def specs(self, user_id: str) -> list[LogoSpec]:
        """The user's logos as fetched last, placed as their settings say (shared/logo_layout.py)."""
        with self._lock:
            return list(self._specs.get(user_id, []))

    def files(self, user_id: str) -> list[Path]:
        return [Path(s.path) for s in self.specs(user_id)]

    def settled(self, timeout: float) -> bool:
        """Whether every submitted fetch finished in time (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    # ---- per booking -----------------------------------------------------------------------------

    def fix(self, booking: ScheduledBooking, booking_dir: BookingDir) -> BookingLogos:
        """The booking's logos: chosen at its first call (the booking's start), the same ever after."""
        with self._lock:
            held = self._bookings.get(booking.id)
        if held is not None:
            return held
        try:
            specs = booking_dir.fix_logos(self.specs(booking.user_id))
        except OSError as exc:
            log.warning("booking %s: cannot record its logo choice (%s); using the current files", booking.id, exc)
            specs = self.specs(booking.user_id)
        fixed = BookingLogos(booking.id, specs)
        with self._lock:
            return self._bookings.setdefault(booking.id, fixed)

    def held(self, booking_id: str) -> BookingLogos | None:
        with self._lock:
            return self._bookings.get(booking_id)

    def forget(self, booking_id: str) -> None:
        with self._lock:
            self._bookings.pop(booking_id, None)

    def prepare_later(self, logos: BookingLogos, geometry: Geometry) -> None:
        """Prepare off the camera's path (for cameras that draw in their own callback)."""
        self._executor.submit(logos.prepare, geometry)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
