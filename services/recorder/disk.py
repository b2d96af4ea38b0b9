"""Disk guard: keep MIN_FREE_DISK_MB free, reclaiming only files whose video is already uploaded.

A file is reclaimable when the store says its booking is `video_uploaded` (the cloud has it):
leftover raw recordings, segment folders and processed videos, oldest first. Anything else is
the only copy of someone's match and is never touched; if that is not enough the recorder stops
cleanly and reports instead of filling the disk and writing a corrupt file.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from services.recorder.layout import SAFE_ID
from shared.models import BookingStatus
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
        for path in self._reclaimable():
            if self.ok():
                break
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as exc:
                log.warning("could not reclaim %s: %s", path, exc)
                continue
            log.warning("disk low: removed already-uploaded %s", path)
            removed.append(path)
        return removed

    def _reclaimable(self) -> list[Path]:
        uploaded: dict[str, bool] = {}

        def is_uploaded(booking_id: str) -> bool:
            if booking_id not in uploaded:
                booking = self.store.get_booking(booking_id)
                uploaded[booking_id] = booking is not None and booking.status == BookingStatus.video_uploaded
            return uploaded[booking_id]

        found: list[tuple[float, Path]] = []
        for folder, with_dirs in ((self.raw_dir, True), (self.processed_dir, False)):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_dir():
                    booking_id = entry.name if with_dirs else ""
                elif entry.suffix == ".mp4":
                    booking_id = entry.stem
                else:
                    continue
                if SAFE_ID.match(booking_id) and is_uploaded(booking_id):
                    try:
                        found.append((entry.stat().st_mtime, entry))
                    except OSError:
                        continue
        return [path for _, path in sorted(found)]
