"""One MP4 being written: an H.264 stream at an OutputFormat, frames numbered 0, 1, 2... at a constant rate.

Frames reach it two ways: encoded here (`emit`), or copied as packets from a file encoded earlier with
the same format (`copy_from`, the prepared intro). Everything streams: decode -> blend -> encode -> mux.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
from av.bitstream import BitStreamFilterContext

from services.video_worker.media.audio_track import AudioTrack
from services.video_worker.media.decode import MediaSource
from shared import failpoints
from shared.overlay import FramePool, PreparedLogo, blend_logos
from shared.video_format import OutputFormat, add_format_stream, is_full_range, to_limited_range

ProgressFn = Callable[[float, float], None]
T = TypeVar("T")

PROGRESS_INTERVAL_S = 0.5
MAX_TIMESTAMP_JUMP_S = 2.0
"""A bigger jump between recording frames is a broken clock, not missing frames: no filling."""
AUDIO_GAP_LAG_S = 2.0
"""Recording audio this far behind the video is considered missing and replaced by silence."""
ANNEXB = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


def samples_at(frames: int, rate: Fraction, sample_rate: int) -> int:
    """Audio sample position of video frame `frames`, in exact integer arithmetic (rounded half up)."""
    num = frames * rate.denominator * sample_rate
    return (2 * num + rate.numerator) // (2 * rate.numerator)


def guarded(items: Iterator[T], on_error: Callable[[Exception], None]) -> Iterator[T]:
    """Stop (instead of failing) when reading an input raises something unexpected."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:  # input-side only: errors in the consumer's body are not caught here
            on_error(exc)
            return
        yield item


class VideoOutput:
    def __init__(self, container: av.container.OutputContainer, fmt: OutputFormat, *,
                 progress: ProgressFn | None = None, expected_frames: int = 1,
                 on_frame: Callable[[int], None] | None = None) -> None:
        self.container = container
        self.fmt = fmt
        self.stream = add_format_stream(container, fmt)
        self.next_pts = 0
        self.progress = progress
        self.expected = max(1, expected_frames)
        self.on_frame = on_frame
        """Called with the output's frame count after every frame: keeps the audio interleaved."""
        self._started = self._last_report = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def extradata(self) -> bytes:
        """The live encoder's parameter sets (opened by container.start_encoding())."""
        return bytes(self.stream.codec_context.extradata or b"")

    def emit(self, frame: av.VideoFrame) -> None:
        frame.pts = self.next_pts
        frame.time_base = self.fmt.time_base
        frame.pict_type = 0  # libx264 would otherwise obey the source's I/P/B decisions
        self.container.mux(self.stream.encode(frame))
        self.next_pts += 1
        self._after_frame()
        failpoints.frame_encoded()

    def copy_from(self, path: Path) -> int:
        """Append a file encoded with this format by packet copy; returns its frame count.

        The encoder's stream carries Annex B parameter sets, so MP4 (length-prefixed) packets are
        converted first: muxed as they are, the MP4 muxer would find no start codes and write nothing.
        """
        base = self.next_pts
        n = 0
        with av.open(str(path)) as src:
            ins = src.streams.video[0]
            bsf = BitStreamFilterContext(ANNEXB.get(ins.codec_context.name, "null"), in_stream=ins)
            shift = round(base * self.fmt.time_base / ins.time_base)

            def put(packets: list[av.Packet]) -> None:
                nonlocal n
                for packet in packets:
                    if packet.pts is not None:
                        packet.pts += shift
                    if packet.dts is not None:
                        packet.dts += shift
                    packet.time_base = ins.time_base
                    packet.stream = self.stream
                    self.container.mux(packet)
                    n += 1
                    self.next_pts = base + n
                    self._after_frame()

            for packet in src.demux(ins):
                if packet.size:
                    put(bsf.filter(packet))
            put(bsf.filter(None))
        return n

    def flush(self) -> None:
        self.container.mux(self.stream.encode(None))

    def report(self, percent: float) -> None:
        if self.progress is not None:
            self.progress(percent, self.next_pts / max(self.elapsed, 1e-6))

    def _after_frame(self) -> None:
        if self.on_frame is not None:
            self.on_frame(self.next_pts)
        if self.progress is not None:
            now = time.monotonic()
            if now - self._last_report >= PROGRESS_INTERVAL_S:
                self._last_report = now
                self.report(min(99.9, 100.0 * self.next_pts / self.expected))


@dataclass
class RecordingStats:
    frames: int = 0
    dropped: int = 0  # recording frames dropped to keep a constant rate
    duplicated: int = 0  # extra copies emitted to fill gaps in the recording
    last_time: float | None = None  # presentation time (source timeline) of the last frame used


def place_audio(audio: AudioTrack, resampler: av.AudioResampler, frame: av.AudioFrame | None, base: int,
                t0: float) -> None:
    for out in resampler.resample(frame):
        pos = None if out.time is None else base + round((out.time - t0) * audio.rate)
        audio.place(out.to_ndarray(), pos)


def encode_recording(out: VideoOutput, rec: MediaSource, logos: list[PreparedLogo], warnings: list[str],
                     warn: Callable[[list[str], str], None], audio: AudioTrack | None = None) -> RecordingStats:
    """Every recording frame, blended, at a constant rate: gaps filled and bursts thinned by timestamp."""
    fmt = out.fmt
    stats = RecordingStats()
    pool = FramePool(fmt.width, fmt.height, fmt.pix_fmt, size=1)  # encoders copy input frames (make_writable checks)
    fps = float(fmt.rate)
    start = base = out.next_pts
    t0 = rec.start_time
    offset = 0.0  # accumulated correction after clock jumps
    max_jump = MAX_TIMESTAMP_JUMP_S * fps
    resampler = audio.resampler() if audio is not None and rec.audio is not None else None
    audio_base = audio.cursor if audio is not None else 0
    lag = round(AUDIO_GAP_LAG_S * audio.rate) if audio is not None and rec.audio is not None else 0
    stopped: list[str] = []
    jumps: list[float] = []

    def stop(exc: Exception) -> None:
        stopped.append(f"{type(exc).__name__}: {exc}")

    def prepare(frame: av.VideoFrame) -> av.VideoFrame:
        """Make a decoded frame encodable and draw the logos on it, touching only the logo regions."""
        if not fmt.full_range and is_full_range(frame):
            frame = to_limited_range(frame, fmt.width, fmt.height, fmt.pix_fmt)  # a new frame
        elif frame.format.name != fmt.pix_fmt or frame.width != fmt.width or frame.height != fmt.height:
            frame = frame.reformat(width=fmt.width, height=fmt.height, format=fmt.pix_fmt)  # a new frame
        elif logos:
            frame = pool.copy(frame)  # decoded frames share buffers with reference pictures
        if logos:
            blend_logos(frame, logos)
        return frame

    for item in guarded(rec.frames, stop):
        if isinstance(item, av.VideoFrame):
            copies = 1
            if item.time is not None:
                delta = base + (item.time - t0) * fps + offset - out.next_pts
                if abs(delta) > max_jump:
                    offset -= delta
                    jumps.append(delta / fps)
                elif delta < -1.1:
                    stats.dropped += 1
                    continue
                elif delta > 1.1:
                    copies += round(delta)
                    stats.duplicated += copies - 1
            if item.time is not None:
                stats.last_time = item.time
            frame = prepare(item)
            for _ in range(copies):
                out.emit(frame)
            if audio is not None:
                audio.pad_to(samples_at(out.next_pts, fmt.rate, audio.rate) - lag)
        elif resampler is not None and audio is not None:
            try:
                place_audio(audio, resampler, item, audio_base, t0)
            except (av.FFmpegError, ValueError) as exc:
                warn(warnings, f"recording audio unreadable from here ({exc}); silence instead")
                resampler = None
    if resampler is not None and audio is not None:
        with contextlib.suppress(av.FFmpegError, ValueError):
            place_audio(audio, resampler, None, audio_base, t0)
    if jumps:
        warn(warnings, f"recording timestamps jump {len(jumps)}x (first {jumps[0]:+.1f} s); not filled")
    if stopped:
        warn(warnings, f"recording read stopped early ({stopped[0]}); output ends there")
    stats.frames = out.next_pts - start
    return stats
