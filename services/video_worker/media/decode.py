"""Tolerant demux+decode of one input file: corrupt packets are counted and skipped, never fatal."""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from shared import spliced_file

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DEMUX_ERRORS = 50
"""A truncated or garbage tail produces a burst of read errors; past this many in a row we stop."""
MAX_AUDIO_BEFORE_VIDEO = 512
"""Audio frames kept while looking for the first video frame (older ones precede the video anyway)."""

COMMON_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60", "90", "120")
)


class SourceError(Exception):
    """The file cannot be opened or has no decodable video frame."""


class MediaSource:
    """One input: its video (and optional audio) stream and a single pass over decoded frames.

    Opening decodes up to the first video frame, so "is this readable at all" and the frame size,
    pixel format and colour tags are known before any output is created.
    """

    def __init__(self, path: Path, *, with_audio: bool = True, stream: BinaryIO | None = None,
                 frame_threads: bool = False) -> None:
        """`stream`: read from this file object instead of opening `path` (e.g. a segment still being written).

        `frame_threads`: decode with frame threads as well as slice threads (one-shot use: a stream encoded
        without slices then decodes on every core, at the cost of one held frame per extra thread).
        """
        self.path = path
        self.errors = 0
        self.first_error: str | None = None
        self.video_packets = 0
        """Video packets read (size > 0, timestamped), whether or not they decode: what a packet-copy join keeps."""
        try:
            if stream is not None:
                self.container = av.open(stream, format="mp4", metadata_errors="ignore")
            else:
                self.container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot open {path.name}: {exc}") from exc
        try:
            if not self.container.streams.video:
                raise SourceError(f"{path.name} has no video stream")
            self.video: VideoStream = self.container.streams.video[0]
            # Slice threads: parallel on sliced streams (the recorder's zerolatency x264) without the
            # frame-thread delay, which holds a 1080p frame (3 MB) per extra thread: the service's default,
            # where memory on a Pi counts. AUTO (frame + slice) for a one-shot job that asks for it.
            self.video.codec_context.thread_type = "AUTO" if frame_threads else "SLICE"
            self.video.codec_context.thread_count = os.cpu_count() or 1
            self.audio: AudioStream | None = None
            if with_audio and self.container.streams.audio:
                self.audio = self.container.streams.audio[0]
            self._frames = self._decode()
            early: deque[av.AudioFrame] = deque(maxlen=MAX_AUDIO_BEFORE_VIDEO)
            first: av.VideoFrame | None = None
            for frame in self._frames:
                if isinstance(frame, av.VideoFrame):
                    first = frame
                    break
                early.append(frame)
            if first is None:
                detail = f" ({self.first_error})" if self.first_error else ""
                raise SourceError(f"{path.name}: no decodable video frame{detail}")
            self.first: av.VideoFrame = first
            self.frames: Iterator[av.VideoFrame | av.AudioFrame] = itertools.chain(early, [first], self._frames)
        except BaseException:
            self.container.close()
            raise

    @property
    def start_time(self) -> float:
        """Presentation time of the first video frame: the zero of this part's timeline."""
        return self.first.time if self.first.time is not None else 0.0

    @property
    def duration(self) -> float:
        """Best guess of the video length, for progress reporting only."""
        if self.video.duration and self.video.time_base:
            return float(self.video.duration * self.video.time_base)
        if self.container.duration:
            return self.container.duration / 1_000_000
        return 0.0

    def frame_rate(self) -> Fraction:
        """Nominal rate, as the ffmpeg CLI picks it: av_guess_frame_rate (r_frame_rate), else the average.

        The average is lowered by dropped frames; the nominal rate is what the camera ran at, and
        gaps are then filled by repeating frames.
        """

        def sane(r: Fraction | None) -> Fraction | None:
            return Fraction(r) if r and 1 <= float(r) <= 240 else None

        rate = sane(self.video.guessed_rate) or sane(self.video.average_rate) or Fraction(30)
        nearest = min(COMMON_RATES, key=lambda common: abs(float(rate / common) - 1))
        if abs(float(rate / nearest) - 1) < 0.0004:  # tighter than 30 vs 30000/1001 (0.1 %)
            return nearest
        return rate.limit_denominator(1001)

    def close(self) -> None:
        self.container.close()

    def _record_error(self, where: str, exc: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{where}: {exc}"
        log.debug("%s: %s error: %s", self.path.name, where, exc)

    def _decode(self) -> Iterator[av.VideoFrame | av.AudioFrame]:
        streams = [s for s in (self.video, self.audio) if s is not None]
        demux = self.container.demux(streams)
        consecutive = 0
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError, ValueError) as exc:
                self._record_error("read", exc)
                consecutive += 1
                if consecutive > MAX_CONSECUTIVE_DEMUX_ERRORS:
                    yield from self._drain(streams)
                    return
                demux = self.container.demux(streams)  # a failed generator is dead; reading resumes
                continue
            consecutive = 0
            if packet.size and packet.stream.index == self.video.index and None not in (packet.pts, packet.dts):
                self.video_packets += 1
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                self._record_error("decode", exc)
                continue
            yield from frames

    def _drain(self, streams: list[VideoStream | AudioStream]) -> Iterator[av.VideoFrame | av.AudioFrame]:
        """Flush decoders by hand when reading gave up before the demuxer's own flush packets."""
        for stream in streams:
            try:
                yield from stream.decode(None)
            except (av.FFmpegError, ValueError) as exc:
                self._record_error("flush", exc)


def count_video_packets(path: Path) -> int:
    """Video packets a packet-copy join keeps (size > 0, timestamped): the recorder's frame count of a file.

    Reads the container only (nothing is decoded) and stops at the first unreadable spot, as a join does.
    """
    n = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                return 0
            for packet in c.demux(c.streams.video[0]):
                if packet.size and None not in (packet.pts, packet.dts):
                    n += 1
    except (av.FFmpegError, OSError, ValueError):
        pass
    return n


def describe_video(path: Path) -> tuple[int, float]:
    """(frames, seconds) of a finished MP4's video track, from its index (nothing decoded)."""
    with spliced_file.open_read(path) as fh, av.open(fh) as c:
        stream = c.streams.video[0]
        frames = int(stream.frames or 0)
        if stream.duration and stream.time_base:
            return frames, float(stream.duration * stream.time_base)
        return frames, (c.duration or 0) / 1_000_000
