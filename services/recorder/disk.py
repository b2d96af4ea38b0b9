"""Disk guard: keep MIN_FREE_DISK_MB free, reclaiming only files whose video is already uploaded.

A file is reclaimable when the store says its booking is `video_uploaded` (the cloud has it):
leftover raw recordings, segment folders and processed videos; and whatever the store itself lists
as reclaimable (with Supabase: the local mirror copies of videos whose upload the cloud confirmed;
the embedded store lists nothing, its files are the videos). All of them go oldest first. Anything
else is the only copy of someone's match and is never touched; if that is not enough the recorder
stops cleanly and reports instead of filling the disk and writing a corrupt file.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from shared import spliced_file
from shared.models import BookingStatus
from shared.recordings.layout import SAFE_ID, VIDEO_SUFFIX
from shared.store import Store

log = logging.getLogger(__name__)

MB = 1024 * 1024
FreeSpaceProbe = Callable[[], int]
"""Free bytes on the recordings filesystem (injectable, so tests can simulate a full disk)."""


class DiskGuard:
    def __init__(self, raw_dir: Path, processed_dir: Path, min_free_mb: int, store: Store,
                 probe: FreeSpaceProbe | None = None) -> None:
        self.raw_dir = raw_dir
        self.processed_dir = processed_dir
        self.min_free_bytes = min_free_mb * MB
        self.store = store
        self.probe = probe or (lambda: shutil.disk_usage(raw_dir).free)

    def free_bytes(self) -> int:
        return int(self.probe())

    def ok(self) -> bool:
        return self.min_free_bytes <= 0 or self.free_bytes() >= self.min_free_bytes

    def ensure(self) -> bool:
        """True when enough space is free, after reclaiming uploaded files if needed."""
        if self.ok():
            return True
        self.reclaim()
        return self.ok()

    def reclaim(self) -> list[Path]:
        removed: list[Path] = []
        for path, from_store in self._reclaimable():
            if self.ok():
                break
            try:
                if from_store:
                    if not self.store.reclaim_file(path):  # became the only copy again since it was listed
                        continue
                elif path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except Exception as exc:  # one file that cannot go (or a store hiccup) must not stop the rest
                log.warning("could not reclaim %s: %s", path, exc)
                continue
            log.warning("disk low: removed already-uploaded %s", path)
            removed.append(path)
        return removed

    def _reclaimable(self) -> list[tuple[Path, bool]]:
        """(path, listed by the store), oldest first across the recordings folders and the store's copies."""
        uploaded: dict[str, bool] = {}

        def is_uploaded(booking_id: str) -> bool:
            if booking_id not in uploaded:
                booking = self.store.get_booking(booking_id)
                uploaded[booking_id] = booking is not None and booking.status == BookingStatus.video_uploaded
            return uploaded[booking_id]

        found: list[tuple[float, Path, bool]] = []
        for folder, with_dirs in ((self.raw_dir, True), (self.processed_dir, False)):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_dir() and not (entry.suffix == VIDEO_SUFFIX and spliced_file.is_splice(entry)):
                    booking_id = entry.name if with_dirs else ""
                elif entry.suffix == VIDEO_SUFFIX:
                    booking_id = entry.stem
                else:
                    continue
                if SAFE_ID.match(booking_id) and is_uploaded(booking_id):
                    try:
                        found.append((entry.stat().st_mtime, entry, False))
                    except OSError:
                        continue
        try:
            copies = self.store.reclaimable_files()
        except Exception as exc:  # the recordings folders can still make room
            log.warning("store could not list reclaimable files: %s", exc)
            copies = []
        try:
            device: int | None = self.raw_dir.stat().st_dev
        except OSError:
            device = None
        for copy in copies:
            try:
                st = copy.stat()
            except OSError:
                continue
            if device is None or st.st_dev == device:  # on another disk, removing it would free nothing here
                found.append((st.st_mtime, copy, True))
        return [(path, from_store) for _, path, from_store in sorted(found)]
