"""Where a booking's recording lives on disk, and the only place booking ids become paths.

RAW_RECORDINGS_DIR/<booking_id>/seg-NNNNN.mp4   closed or in-progress segments (fragmented MP4)
RAW_RECORDINGS_DIR/<booking_id>/.booking.json   who the segments belong to and their time origin
RAW_RECORDINGS_DIR/<booking_id>/.finished.json  the recording is over: its facts (frames, capture times, size)
RAW_RECORDINGS_DIR/<booking_id>/.logos.json     the logo files drawn at capture, fixed at the booking's start
RAW_RECORDINGS_DIR/<booking_id>/.tally.json     the closed segments counted so far (join.count_closed)
RAW_RECORDINGS_DIR/<booking_id>.mp4             a joined recording (written by recorders before issue 12:
                                                still read)

The metadata file is hidden so queue counters that count segments skip it; it lets a restarted
recorder resume into the same timeline and finalise a booking the schedule and store no longer know.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from shared.atomic import write_text_atomic
from shared.logo_layout import booking_logos
from shared.models import SAFE_ID_PATTERN, LogoPlacement, SafeId
from shared.overlay import LogoSpec
from shared.payloads import ScheduledBooking
from shared.timeutil import UtcDatetime

log = logging.getLogger(__name__)

SAFE_ID = re.compile(SAFE_ID_PATTERN)
META_NAME = ".booking.json"
FINISHED_NAME = ".finished.json"
LOGOS_NAME = ".logos.json"
TALLY_NAME = ".tally.json"
SEGMENT_GLOB = "seg-*.mp4"
_SEGMENT_NAME = re.compile(r"^seg-(\d{5})\.mp4$")


class UnsafeId(ValueError):
    pass


class BookingMeta(BaseModel):
    """Segment timestamps are capture times relative to `origin`, so every segment shares one timeline."""

    booking_id: SafeId
    user_id: SafeId
    origin: UtcDatetime
    start_time: UtcDatetime
    end_time: UtcDatetime


class FinishedMeta(BaseModel):
    """Written once, atomically, when the booking's recording is over (recording/finished says the same)."""

    frames: int
    first_frame_at: UtcDatetime
    last_frame_at: UtcDatetime
    size_bytes: int
    segments: int


class BookingLogoFiles(BaseModel):
    """The verified media-cache files a booking's frames get as logos, in drawing order, and where each goes
    (`placements[i]` for `files[i]`; missing in a file written before placements: the defaults)."""

    files: list[Path]
    placements: list[LogoPlacement] | None = None

    def specs(self) -> list[LogoSpec]:
        if self.placements is None or len(self.placements) != len(self.files):
            return booking_logos(self.files)
        return [LogoSpec(path=f, corner=p.corner, width_fraction=p.width_fraction, margin_fraction=p.margin_fraction)
                for f, p in zip(self.files, self.placements, strict=True)]

    @classmethod
    def of(cls, specs: list[LogoSpec]) -> BookingLogoFiles:
        return cls(files=[Path(s.path) for s in specs],
                   placements=[LogoPlacement(corner=s.corner, width_fraction=s.width_fraction,
                                             margin_fraction=s.margin_fraction) for s in specs])


class BookingDir:
    def __init__(self, raw_dir: Path, booking_id: str) -> None:
        if not SAFE_ID.match(booking_id):
            raise UnsafeId(f"booking id {booking_id!r} is not a safe file name")
        self.booking_id = booking_id
        self.raw_dir = raw_dir
        self.path = raw_dir / booking_id
        self.target = raw_dir / f"{booking_id}.mp4"
        self.meta_path = self.path / META_NAME
        self.finished_path = self.path / FINISHED_NAME
        self.logos_path = self.path / LOGOS_NAME
        self.tally_path = self.path / TALLY_NAME

    def read_meta(self) -> BookingMeta | None:
        try:
            return BookingMeta.model_validate_json(self.meta_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.error("unreadable %s: %s", self.meta_path, exc)
            return None

    def ensure_meta(self, booking: ScheduledBooking, origin: datetime) -> BookingMeta:
        """The first writer fixes the origin; later runs (after a restart) keep it."""
        existing = self.read_meta()
        if existing is not None:
            return existing
        meta = BookingMeta(booking_id=booking.id, user_id=booking.user_id, origin=min(origin, booking.start_time),
                           start_time=booking.start_time, end_time=booking.end_time)
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.meta_path, meta.model_dump_json())
        return meta

    def read_finished(self) -> FinishedMeta | None:
        try:
            return FinishedMeta.model_validate_json(self.finished_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.error("unreadable %s: %s", self.finished_path, exc)
            return None

    def write_finished(self, finished: FinishedMeta) -> None:
        write_text_atomic(self.finished_path, finished.model_dump_json())

    def fix_logos(self, specs: list[LogoSpec]) -> list[LogoSpec]:
        """The first call fixes the booking's logos (files and placements); later ones (a resumed session) get
        the same."""
        try:
            return BookingLogoFiles.model_validate_json(self.logos_path.read_bytes()).specs()
        except FileNotFoundError:
            pass
        except (OSError, ValidationError) as exc:
            log.error("unreadable %s (%s); fixing the logos again", self.logos_path, exc)
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.logos_path, BookingLogoFiles.of(specs).model_dump_json())
        return specs

    def segments(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.glob(SEGMENT_GLOB) if _SEGMENT_NAME.match(p.name))

    def segments_through(self, index: int) -> list[Path]:
        """The segments up to and including `index` (those after it may still be being written)."""
        return [p for p in self.segments() if int(_SEGMENT_NAME.match(p.name).group(1)) <= index]  # type: ignore[union-attr]

    def next_segment(self) -> tuple[int, Path]:
        """Indices continue after whatever an earlier (possibly killed) run left behind."""
        existing = self.segments()
        index = int(_SEGMENT_NAME.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        return index, self.path / f"seg-{index:05d}.mp4"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.raw_dir).as_posix()


def booking_dirs(raw_dir: Path) -> list[BookingDir]:
    """Directories under RAW whose names are safe ids; anything else is not ours to touch."""
    if not raw_dir.is_dir():
        return []
    found = []
    for entry in sorted(raw_dir.iterdir()):
        if entry.is_dir() and SAFE_ID.match(entry.name):
            found.append(BookingDir(raw_dir, entry.name))
    return found


def stale_join_temps(raw_dir: Path) -> list[Path]:
    """Temp files of a join interrupted by a crash (`.<id>.mp4.XXXX.mp4`, see shared.atomic)."""
    if not raw_dir.is_dir():
        return []
    return [p for p in raw_dir.glob(".*.mp4.*") if p.is_file()]
