"""Recorder-layout segments for the worker's tests, written by the recorder's own SegmentWriter.

RAW/<booking>/.booking.json + seg-NNNNN.mp4 (fragmented MP4, timestamps = capture time - booking
origin, first capture time in the file's metadata), exactly what services/recorder writes. Every frame
carries its number as a 12-bit barcode along the bottom edge, so a test can read back which recording
frames a finished video shows, in which order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

from services.recorder.camera import CapturedFrame
from services.recorder.writer import FRAGMENTED, EncodeSpec, SegmentWriter
from shared import capture_stamp
from shared.overlay import LogoSpec, blend_logos, load_logos
from shared.payloads import RecordingSegment, ScheduledBooking
from shared.recordings import timeline
from shared.recordings.layout import BookingDir
from shared.video_encode import EncodeSettings
from shared.video_format import OutputFormat, add_format_stream, derive_format
from tests.media import open_media

BITS = 12
CELL = 16


@dataclass
class Segment:
    index: int
    path: Path
    file: str  # relative to RAW_RECORDINGS_DIR
    start_at: datetime
    end_at: datetime
    frames: int
    size_bytes: int

    def event(self, booking_id: str, camera_id: str, user_id: str) -> RecordingSegment:
        return RecordingSegment(booking_id=booking_id, camera_id=camera_id, user_id=user_id, index=self.index,
                                file=self.file, start_at=self.start_at, end_at=self.end_at, frames=self.frames,
                                size_bytes=self.size_bytes)


def numbered_frame(n: int, size: tuple[int, int]) -> av.VideoFrame:
    """A bright gradient (never intro blue) with frame number `n` as black/white cells at the bottom."""
    w, h = size
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    y = (70 + 100 * xs + 40 * ys).astype(np.uint8)
    for bit in range(BITS):
        y[h - CELL:, bit * CELL:(bit + 1) * CELL] = 235 if (n >> bit) & 1 else 16
    u = np.full((h // 2, w // 2), 100, np.uint8)
    v = np.full((h // 2, w // 2), 150, np.uint8)
    u[(h - CELL) // 2:, : BITS * CELL // 2] = 128
    v[(h - CELL) // 2:, : BITS * CELL // 2] = 128
    return av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)]),
                                      format="yuv420p")


def read_number(rgb: np.ndarray) -> int:
    h = rgb.shape[0]
    n = 0
    for bit in range(BITS):
        cell = rgb[h - CELL + 4: h - 4, bit * CELL + 4:(bit + 1) * CELL - 4]
        if cell.mean() > 128:
            n |= 1 << bit
    return n


def frame_numbers(path: Path, skip: int = 0) -> list[int]:
    """The barcode of every decoded frame after the first `skip` (the intro)."""
    out = []
    with open_media(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= skip:
                out.append(read_number(frame.to_ndarray(format="rgb24")))
    return out


def record_segments(raw_dir: Path, booking_id: str, user_id: str, start: datetime, segment_frames: list[int], *,
                    size: tuple[int, int] = (320, 240), fps: int = 15, first_number: int = 0,
                    end: datetime | None = None) -> tuple[BookingDir, list[Segment]]:
    """Segments of `segment_frames[i]` frames each, back to back from `start`, frames numbered consecutively."""
    booking_dir = BookingDir(raw_dir, booking_id)
    total = sum(segment_frames)
    end = end or start + timedelta(seconds=total / fps)
    meta = booking_dir.ensure_meta(ScheduledBooking(id=booking_id, user_id=user_id, start_time=start, end_time=end,
                                                    status="confirmed"), origin=start)
    segments = []
    n = first_number
    for count in segment_frames:
        index, path = booking_dir.next_segment()
        writer = SegmentWriter(path, meta.origin, encode=EncodeSpec(size[0], size[1], fps))
        for _ in range(count):
            writer.write(CapturedFrame(numbered_frame(n, size), start + timedelta(seconds=n / fps)))
            n += 1
        writer.close()
        assert writer.first_at is not None and writer.last_at is not None
        segments.append(Segment(index, path, booking_dir.relative(path), writer.first_at, writer.last_at,
                                writer.frames, writer.size_bytes))
    return booking_dir, segments


def capture_format(size: tuple[int, int] = (320, 240), fps: int = 15, **encode: object) -> OutputFormat:
    """The OutputFormat a recorder encoding raw frames of this size and rate would stamp."""
    settings = EncodeSettings(**{"preset": "ultrafast", **encode})  # type: ignore[arg-type]
    fmt, _ = derive_format(numbered_frame(0, size), Fraction(fps), settings)
    return fmt


def record_stamped_segments(raw_dir: Path, booking_id: str, user_id: str, start: datetime, segment_frames: list[int],
                            *, fmt: OutputFormat, logos: list[LogoSpec] = (), stamp_logos: str | None = None,
                            stamped: bool = True, end: datetime | None = None,
                            encode_fmt: OutputFormat | None = None,
                            segment_fmts: dict[int, OutputFormat] | None = None,
                            dropped: frozenset[int] = frozenset()) -> tuple[BookingDir, list[Segment]]:
    """Segments as the recorder writes them from raw frames: the logos blended before the one encode (with
    `fmt`), stamped with the format and the logos' fingerprint (shared/capture_stamp.py).

    `encode_fmt` encodes with another format than the stamp claims (an encoder whose parameter sets
    differ); `stamp_logos` overrides the logo fingerprint; `stamped=False` leaves the stamp off;
    `segment_fmts[i]` stamps and encodes segment i with another format (capture restarted with other settings);
    frames numbered in `dropped` are never captured (the camera fell behind: a gap on the timeline)."""
    size, fps = (fmt.width, fmt.height), int(fmt.rate)
    booking_dir = BookingDir(raw_dir, booking_id)
    total = sum(segment_frames)
    end = end or start + timedelta(seconds=total / fps)
    meta = booking_dir.ensure_meta(ScheduledBooking(id=booking_id, user_id=user_id, start_time=start, end_time=end,
                                                    status="confirmed"), origin=start)
    warnings: list[str] = []
    prepared = load_logos(list(logos), size[0], size[1], warnings, bt709=fmt.bt709, full_range=fmt.full_range)
    assert not warnings, warnings
    tags = capture_stamp.stamp(fmt.to_json(), stamp_logos if stamp_logos is not None
                               else capture_stamp.logo_fingerprint(list(logos)))
    segments, n = [], 0
    for count in segment_frames:
        index, path = booking_dir.next_segment()
        first_n = next(k for k in range(n, n + count) if k not in dropped)
        first_at = start + timedelta(seconds=first_n / fps)
        out = av.open(str(path), "w", format="mp4", options={"movflags": FRAGMENTED})
        seg_fmt = (segment_fmts or {}).get(index)
        if stamped:
            out.metadata.update(tags if seg_fmt is None else {**tags, capture_stamp.FORMAT_KEY: seg_fmt.to_json()})
        timeline.stamp(out, first_at)
        stream = add_format_stream(out, seg_fmt or encode_fmt or fmt)
        for _ in range(count):
            if n in dropped:
                n += 1
                continue
            frame = numbered_frame(n, size)
            blend_logos(frame, prepared)
            frame.pts = round((start + timedelta(seconds=n / fps) - meta.origin).total_seconds() * fps)
            frame.time_base = Fraction(1, fps)
            frame.pict_type = PictureType.I if n == first_n else PictureType.NONE
            for packet in stream.encode(frame):
                out.mux(packet)
            n += 1
        for packet in stream.encode(None):
            out.mux(packet)
        out.close()
        segments.append(Segment(index, path, booking_dir.relative(path), first_at,
                                start + timedelta(seconds=(n - 1) / fps), count, path.stat().st_size))
    return booking_dir, segments
