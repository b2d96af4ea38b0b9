"""A booking's segments read as one recording: counted where they lie, or joined by packet copy into one file.

At a booking's end the recorder only counts them (describe_segments): the recording stays as its
segments, each recorded byte written once. Each segment is counted once, when it closes, into the booking's
running tally (`.tally.json` beside the segments), so the end-of-booking count reads one segment, not all of
them: `recording/finished` follows the booking's end by the same fraction of a second at 2 minutes or 2 hours.
Joining them into one file (join_segments: atomically, temp file, fsync, rename) is left to whoever needs one
file: the worker's whole-recording fallback.
Both read the segments the same way, so the frame count announced is the frame count joined.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
from pydantic import BaseModel, ValidationError

from shared.atomic import atomic_path, write_text_atomic
from shared.recordings import timeline

log = logging.getLogger(__name__)


@dataclass
class JoinResult:
    path: Path
    frames: int
    first_frame_at: datetime
    last_frame_at: datetime
    size_bytes: int
    segments: int = 0


class NothingRecorded(Exception):
    pass


def _seconds(delta: timedelta) -> Fraction:
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 1_000_000)


class _Counter:
    """Stands in for the output container when the segments are only counted (nothing is written)."""

    def __init__(self) -> None:
        self.metadata: dict[str, str] = {}

    def add_stream_from_template(self, template: av.video.stream.VideoStream) -> object:
        return template

    def mux(self, _packet: av.Packet) -> None:
        pass


@dataclass
class _Walk:
    frames: int = 0
    used: int = 0
    first_s: Fraction | None = None
    last_s: Fraction | None = None
    last_dts_s: Fraction | None = None
    """The last packet kept: a later segment's packets at or before it overlap and are dropped."""


class CountedSegment(BaseModel):
    name: str
    size: int


class SegmentTally(BaseModel):
    """The walk over the first `len(counted)` segments, as exact fractions ("n/d"), so a count resumed from it
    is the count a walk over all of them makes."""

    counted: list[CountedSegment] = []
    frames: int = 0
    used: int = 0
    first_s: str | None = None
    last_s: str | None = None
    last_dts_s: str | None = None

    def walk(self) -> _Walk:
        def frac(value: str | None) -> Fraction | None:
            return None if value is None else Fraction(value)
        return _Walk(self.frames, self.used, frac(self.first_s), frac(self.last_s), frac(self.last_dts_s))

    @classmethod
    def of(cls, counted: list[Path], walk: _Walk) -> SegmentTally:
        values = asdict(walk)
        for key in ("first_s", "last_s", "last_dts_s"):
            values[key] = None if values[key] is None else str(values[key])
        return cls(counted=[CountedSegment(name=p.name, size=p.stat().st_size) for p in counted], **values)


def join_segments(segments: list[Path], target: Path, origin: datetime) -> JoinResult:
    """Segments are placed on the booking's timeline by their own first-capture stamp.

    A truncated last fragment (kill -9, power cut) is read up to where it breaks; decode
    timestamps stay strictly increasing, so overlapping or repeated packets are dropped.
    """
    with atomic_path(target, suffix=".mp4") as tmp:
        out = av.open(str(tmp), "w", format="mp4",
                      options={"movflags": f"+faststart+{timeline.MOVFLAG_METADATA}"})
        walk = _Walk()
        try:
            _walk(segments, origin, out, walk)
        finally:
            try:
                out.close()
            except (av.FFmpegError, ValueError):
                if walk.frames:
                    raise
        result = _result(segments, origin, walk, target)
    result.size_bytes = target.stat().st_size
    return result


def describe_segments(segments: list[Path], origin: datetime, tally: Path | None = None) -> JoinResult:
    """What join_segments would make of these segments (frames, first/last capture), reading packets only:
    the recording is then kept as its segments, never copied into one file (`path` is their folder).
    With a `tally` (see count_closed) only the segments it has not counted are read."""
    walk, rest = _resume(tally, segments)
    _walk(rest, origin, _Counter(), walk)
    result = _result(segments, origin, walk, segments[0].parent if segments else Path())
    result.size_bytes = sum(p.stat().st_size for p in segments if p.exists())
    return result


def count_closed(segments: list[Path], origin: datetime, tally: Path) -> int:
    """Bring the running tally up to the end of `segments` (the booking's closed ones, in order): reads only
    those not counted yet (normally the one just closed). Returns the frames counted so far."""
    walk, rest = _resume(tally, segments)
    if rest:
        _walk(rest, origin, _Counter(), walk)
        write_text_atomic(tally, SegmentTally.of(segments, walk).model_dump_json())
    return walk.frames


def _resume(tally: Path | None, segments: list[Path]) -> tuple[_Walk, list[Path]]:
    """The tally's walk and the segments after what it counted; a fresh walk over all of them when the tally is
    missing, unreadable, or does not describe the first of these segments as they are now (a torn write)."""
    if tally is None:
        return _Walk(), segments
    try:
        saved = SegmentTally.model_validate_json(tally.read_bytes())
        walk = saved.walk()
    except FileNotFoundError:
        return _Walk(), segments
    except (OSError, ValidationError, ValueError, ZeroDivisionError) as exc:
        log.warning("segment tally %s unreadable (%s); counting every segment", tally, exc)
        return _Walk(), segments
    done = len(saved.counted)
    try:
        same = done <= len(segments) and all(
            c.name == p.name and c.size == p.stat().st_size for c, p in zip(saved.counted, segments, strict=False))
    except OSError:
        same = False
    if not same:
        log.warning("segment tally %s does not match the segments on disk; counting every segment", tally)
        return _Walk(), segments
    return walk, segments[done:]


def _result(segments: list[Path], origin: datetime, walk: _Walk, path: Path) -> JoinResult:
    if walk.frames == 0 or walk.first_s is None or walk.last_s is None:
        raise NothingRecorded(f"no readable frames in {[p.name for p in segments]}")
    return JoinResult(path=path, frames=walk.frames, first_frame_at=origin + timedelta(seconds=float(walk.first_s)),
                      last_frame_at=origin + timedelta(seconds=float(walk.last_s)), size_bytes=0,
                      segments=walk.used)


def _walk(segments: list[Path], origin: datetime, out: av.container.OutputContainer | _Counter,
          walk: _Walk) -> None:
    last_dts_s = walk.last_dts_s
    out_stream = None
    for segment in segments:
        try:
            src = av.open(str(segment))
        except av.FFmpegError as exc:
            log.warning("skipping unreadable segment %s: %s", segment, exc)
            continue
        with src:
            if not src.streams.video or src.streams.video[0].time_base is None:
                continue
            in_stream = src.streams.video[0]
            tb = in_stream.time_base
            anchor = timeline.first_capture(src)
            if anchor is not None:  # on the stream's tick grid: the stamp's microseconds are rounded, and a
                # resumed segment's overlap must compare (and be dropped) tick for tick, as the muxer sees it
                base = round(_seconds(anchor - origin) / tb) * tb
            else:  # not stamped (older file): append it after what came before
                log.warning("segment %s has no capture stamp; appending it", segment)
                base = last_dts_s + tb if last_dts_s is not None else Fraction(0)
            before = walk.frames
            seg_first: int | None = None
            try:
                for packet in src.demux(in_stream):
                    if packet.size == 0 or packet.dts is None or packet.pts is None or packet.is_corrupt:
                        continue  # flush packets, and the torn last frame of a cut fragment
                    seg_first = packet.pts if seg_first is None else seg_first
                    pts_s = base + (packet.pts - seg_first) * tb
                    dts_s = base + (packet.dts - seg_first) * tb
                    if last_dts_s is not None and dts_s <= last_dts_s:
                        continue
                    if out_stream is None:
                        out_stream = out.add_stream_from_template(in_stream)  # keeps a display matrix
                        timeline.stamp(out, origin + timedelta(seconds=float(pts_s)))  # type: ignore[arg-type]
                    last_dts_s = walk.last_dts_s = dts_s
                    walk.first_s = pts_s if walk.first_s is None else min(walk.first_s, pts_s)
                    walk.last_s = pts_s if walk.last_s is None else max(walk.last_s, pts_s)
                    packet.stream = out_stream
                    packet.time_base = tb
                    packet.pts, packet.dts = round(pts_s / tb), round(dts_s / tb)
                    out.mux(packet)
                    walk.frames += 1
            except av.FFmpegError as exc:
                log.warning("segment %s ends in a damaged fragment (%s); kept what was readable", segment, exc)
            walk.used += walk.frames > before


def describe_recording(path: Path) -> JoinResult:
    """Facts of an already joined file, for a finalisation interrupted after the rename."""
    try:
        times = timeline.capture_times(path)
    except ValueError as exc:
        raise NothingRecorded(str(exc)) from exc
    if not times:
        raise NothingRecorded(f"{path} holds no video packets")
    return JoinResult(path=path, frames=len(times), first_frame_at=times[0], last_frame_at=times[-1],
                      size_bytes=path.stat().st_size)
