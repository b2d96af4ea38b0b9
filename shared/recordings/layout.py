"""Where a booking's recording lives on disk, and the only place booking ids become paths.

RAW_RECORDINGS_DIR/<booking_id>/seg-NNNNN.mp4   closed or in-progress segments (fragmented MP4)
RAW_RECORDINGS_DIR/<booking_id>/.booking.json   who the segments belong to and their time origin
RAW_RECORDINGS_DIR/<booking_id>/.finished.json  the recording is over: its facts (frames, capture times, size)
RAW_RECORDINGS_DIR/<booking_id>/.logos.json     the logo files drawn at capture, fixed at the booking's start
RAW_RECORDINGS_DIR/<booking_id>/.tally.json     the closed segments counted so far (segments.count_closed)
RAW_RECORDINGS_DIR/<booking_id>.mp4             a joined recording (written by recorders before issue 12:
                                                still read)

PROCESSED_DIR/<booking_id>.mp4                  a finished video waiting for its upload (the worker's output)
PROCESSED_DIR/<booking_id>/part-NNNNN.mp4       one processed piece per recorder segment
PROCESSED_DIR/<booking_id>/held-NNNNN.mp4       a hard link keeping a recorder segment for the remux join
PROCESSED_DIR/<booking_id>/whole-input.mp4      the segments joined into one file (the whole-recording fallback)

The metadata file is hidden so queue counters that count segments skip it; it lets a restarted
recorder resume into the same timeline and finalise a booking the schedule and store no longer know.
Every service spells these paths through this module (the way shared/topics.py owns the MQTT topics).
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
VIDEO_SUFFIX = ".mp4"
"""A joined recording in RAW and a finished video in PROCESSED are `<booking_id>.mp4`."""
WHOLE_INPUT_NAME = "whole-input.mp4"


def segment_name(index: int) -> str:
    return f"seg-{index:05d}.mp4"


def segment_file(booking_id: str, index: int) -> str:
    """A segment's name relative to RAW_RECORDINGS_DIR, as recording/segment events carry it."""
    return f"{booking_id}/{segment_name(index)}"


def segment_index(path: Path) -> int | None:
    """The index in a `seg-NNNNN.mp4` name; None for any other name (a joined recording, a temp file)."""
    match = _SEGMENT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def video_name(booking_id: str) -> str:
    """`<booking_id>.mp4`: a joined recording in RAW, a finished video in PROCESSED."""
    return f"{booking_id}{VIDEO_SUFFIX}"


def joined_recording(raw_dir: Path, booking_id: str) -> Path:
    """A booking's recording joined into one file (recorders before issue 12 wrote it; still read)."""
    return raw_dir / video_name(booking_id)


def finished_recording(raw_dir: Path, booking_id: str, raw_file: str | None = None) -> Path | None:
    """The booking's finished recording, if there: a joined file, or a segment folder the recorder
    marked finished (RAW/<id>/.finished.json: the recording is over, its segments are all there)."""
    names = [raw_file] if raw_file else [video_name(booking_id), booking_id]
    for name in names:
        path = raw_dir / name
        if path.is_file() or (path.is_dir() and (path / FINISHED_NAME).is_file()):
            return path
    return None


def output_path(processed_dir: Path, booking_id: str) -> Path:
    """The booking's finished video, waiting for its upload."""
    return processed_dir / video_name(booking_id)


def parts_dir(processed_dir: Path, booking_id: str) -> Path:
    return processed_dir / booking_id


def part_path(processed_dir: Path, booking_id: str, index: int) -> Path:
    return parts_dir(processed_dir, booking_id) / f"part-{index:05d}.mp4"


def held_path(processed_dir: Path, booking_id: str, index: int) -> Path:
    """A hard link to a segment the remux path will use, taken while the recorder still writes it: the
    recorder deletes its segments moments after the booking's end, the link keeps them for the join."""
    return parts_dir(processed_dir, booking_id) / f"held-{index:05d}.mp4"


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
        self.target = joined_recording(raw_dir, booking_id)
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
        return [p for p in self.segments() if (segment_index(p) or 0) <= index]

    def next_segment(self) -> tuple[int, Path]:
        """Indices continue after whatever an earlier (possibly killed) run left behind."""
        existing = self.segments()
        index = (segment_index(existing[-1]) or 0) + 1 if existing else 0
        return index, self.path / segment_name(index)

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
