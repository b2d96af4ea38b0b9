"""Packets of a recording's files, from the last keyframe at or before a clip's start to its end, into one MP4.

No decode, no encode: the recorder encodes a keyframe every second (services/recorder/writer.py, GOP = fps), so the
clip begins at most a second before the asked start. Packets keep their capture times: each input file carries
the capture time of its first frame (shared/recordings/timeline.py), and the clip carries its own, so it is
self-describing like a segment. Inputs are fed in capture order; a file may still be growing (read through
video_worker/media/tail_reader.py) and the clip's end may move later while it is read (a press extended it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from shared import capture_stamp
from shared.atomic import atomic_path
from shared.recordings import timeline

MOVFLAGS = f"+faststart+{timeline.MOVFLAG_METADATA}"


class NothingToCut(Exception):
    """No frame of the recording falls in the clip's span."""


def _seconds(delta: timedelta) -> Fraction:
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 1_000_000)


@dataclass
class CutResult:
    path: Path
    frames: int
    first_at: datetime
    last_at: datetime
    lead_s: float
    """How far before the asked start the clip begins (its first keyframe): under a GOP."""
    logos: set[str] = field(default_factory=set)
    """The logo fingerprint of every input used ("none" for an input that carries no stamp: nothing drawn)."""
    same_parameter_sets: bool = True
    """Every input had the same codec parameters (avcC): only then is the copy decodable by every player."""
    rate: Fraction | None = None


class Cutter:
    """Feed it open inputs in capture order; `feed` says when the clip's end has been passed.

    Times are integer ticks of the clip's time base (its first input's; the recorder's segments all share one),
    relative to the first input's capture time: a clip is a thousand packets, so no Fraction per packet.
    """

    def __init__(self, target: Path, start_at: datetime, end_at: Callable[[], datetime]) -> None:
        self.target = target
        self.start_at = start_at
        self.end_at = end_at
        self.passed_end = False
        self.started = False
        self.frames = 0
        self.rate: Fraction | None = None  # the inputs' nominal frame rate, when they say
        self._ref: datetime | None = None  # capture time all clip arithmetic is relative to
        self._tb: Fraction | None = None  # the clip's time base (its first input's)
        self._buffer: list[tuple[av.Packet, int, int]] = []  # from the last keyframe before the start
        self._first_t: int | None = None
        self._last_t: int | None = None
        self._last_dts: int | None = None
        self._end: tuple[datetime, int] | None = None
        self._out: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._extradata: bytes | None = None
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._logos: set[str] = set()
        self._same = True

    def _ticks(self, at: datetime) -> int:
        assert self._ref is not None and self._tb is not None
        return round(_seconds(at - self._ref) / self._tb)

    def _end_ticks(self) -> int:
        end = self.end_at()
        if self._end is None or self._end[0] != end:
            self._end = (end, self._ticks(end))
        return self._end[1]

    # ---- feeding ---------------------------------------------------------------------------------

    def feed(self, container: av.container.InputContainer) -> bool:
        """Reads the input's packets until its end or the clip's end; True once the clip's end was passed."""
        if not container.streams.video:
            return self.passed_end
        stream = container.streams.video[0]
        anchor = timeline.first_capture(container)
        if anchor is None or stream.time_base is None:
            raise ValueError("input carries no capture time (ezrec_first_capture)")
        if self._ref is None:
            self._ref, self._tb = anchor, stream.time_base
        self.rate = self.rate or stream.average_rate or stream.guessed_rate
        logos = capture_stamp.read(container.metadata)[1] or capture_stamp.NO_LOGOS
        extradata = bytes(stream.codec_context.extradata or b"")
        base = self._ticks(anchor)
        scale = None if stream.time_base == self._tb else stream.time_base / self._tb
        start = self._ticks(self.start_at)
        if not self.started:
            self._buffer = []  # a new file starts on a keyframe: never carry packets across files
        first_pts: int | None = None
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None or packet.dts is None or packet.is_corrupt:
                continue
            first_pts = packet.pts if first_pts is None else first_pts
            if scale is None:
                pts, dts = base + packet.pts - first_pts, base + packet.dts - first_pts
            else:
                pts = base + round((packet.pts - first_pts) * scale)
                dts = base + round((packet.dts - first_pts) * scale)
            if pts > self._end_ticks():
                self.passed_end = True
                break
            if self.started:
                self._write(stream, packet, pts, dts, logos, extradata)
                continue
            if packet.is_keyframe and (pts <= start or not self._buffer):
                self._buffer = [(packet, pts, dts)]
            elif self._buffer:
                self._buffer.append((packet, pts, dts))
            if self._buffer and pts >= start:
                self.started = True
                for held, held_pts, held_dts in self._buffer:
                    self._write(stream, held, held_pts, held_dts, logos, extradata)
                self._buffer = []
        return self.passed_end

    def _write(self, stream: av.video.stream.VideoStream, packet: av.Packet, pts: int, dts: int, logos: str,
               extradata: bytes) -> None:
        if self._last_dts is not None and dts <= self._last_dts:
            return  # an overlap between files (a resumed recording): already in the clip
        if self._out is None:
            self._open(stream, pts, extradata)
        elif extradata != self._extradata:
            self._same = False
        assert self._out is not None and self._stream is not None and self._first_t is not None
        self._logos.add(logos)
        self._last_dts = dts
        self._last_t = pts if self._last_t is None else max(self._last_t, pts)
        packet.stream = self._stream
        packet.time_base = self._tb
        packet.pts, packet.dts = pts - self._first_t, dts - self._first_t
        self._out.mux(packet)
        self.frames += 1

    def _open(self, stream: av.video.stream.VideoStream, first: int, extradata: bytes) -> None:
        assert self._ref is not None and self._tb is not None
        self._atomic = atomic_path(self.target, suffix=".mp4")
        tmp = self._atomic.__enter__()
        self._out = av.open(str(tmp), "w", format="mp4", options={"movflags": MOVFLAGS})
        self._stream = self._out.add_stream_from_template(stream)  # keeps a display matrix
        self._extradata = extradata
        self._first_t = first
        timeline.stamp(self._out, self._at(first))

    def _at(self, ticks: int) -> datetime:
        assert self._ref is not None and self._tb is not None
        return self._ref + timedelta(seconds=float(ticks * self._tb))

    # ---- ending ----------------------------------------------------------------------------------

    def finish(self) -> CutResult:
        """Closes the clip and moves it into place (fsynced); NothingToCut when no frame fell in the span."""
        if self._out is None or self._atomic is None:
            raise NothingToCut(f"no frame between {self.start_at.isoformat()} and {self.end_at().isoformat()}")
        try:
            self._out.close()
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)
        assert self._first_t is not None and self._last_t is not None
        first_at = self._at(self._first_t)
        return CutResult(path=self.target, frames=self.frames, first_at=first_at, last_at=self._at(self._last_t),
                         lead_s=max(0.0, (self.start_at - first_at).total_seconds()), logos=set(self._logos),
                         same_parameter_sets=self._same, rate=self.rate)

    def abort(self) -> None:
        """Drop a partial clip (its temp file goes)."""
        if self._out is not None and self._atomic is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            err = RuntimeError("aborted")
            with contextlib.suppress(RuntimeError):
                self._atomic.__exit__(RuntimeError, err, None)
        self._out = None
