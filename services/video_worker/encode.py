"""Encoder settings and the two output tracks: one H.264 video stream and a gap-free AAC audio track."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.audio.resampler import AudioResampler

SOFTWARE_X26X = ("libx264", "libx265")
AAC_FRAME = 1024


@dataclass(frozen=True)
class EncodeSettings:
    """How the single encode pass runs.

    h264_v4l2m2m (Pi 4 hardware) ignores preset/crf and gets `bitrate` or a size-based default.
    """

    codec: str = "libx264"
    preset: str = "veryfast"
    crf: int | None = 23
    bitrate: int | None = None  # bits/s; when set, a VBV-capped target instead of crf
    threads: int = 0  # 0 = one per CPU (x264's own default, 1.5 per CPU, costs ~10 MB a thread at 1080p for no gain)
    gop_seconds: float = 2.0
    audio_bitrate: int = 128_000


def default_bitrate(width: int, height: int, rate: Fraction) -> int:
    """~0.1 bit per pixel: a sane target for encoders that cannot do constant quality."""
    return max(500_000, int(width * height * float(rate) * 0.1))


def encoder_problem(settings: EncodeSettings, width: int, height: int, rate: Fraction, pix_fmt: str) -> str | None:
    """Why `settings.codec` cannot encode this video (None if it can), found before any output exists.

    Hardware encoders can be absent (not a Pi), lack their device or be busy; finding out at the
    first frame would waste the job, so a throwaway context is opened first.
    """
    if settings.codec in SOFTWARE_X26X:
        return None  # built into PyAV's wheels; opening one costs a lookahead allocation for nothing
    try:
        ctx = av.CodecContext.create(settings.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
        ctx.time_base = Fraction(rate.denominator, rate.numerator)
        ctx.framerate = rate
        ctx.bit_rate = settings.bitrate or default_bitrate(width, height, rate)
        ctx.open()
        del ctx  # freed now (CPython refcounting), so a single-instance device is released again
    except Exception as exc:  # any failure means "use the software encoder instead"
        return f"{type(exc).__name__}: {exc}"
    return None


def add_video_stream(
    container: av.container.OutputContainer,
    settings: EncodeSettings,
    width: int,
    height: int,
    rate: Fraction,
    pix_fmt: str,
    color: dict[str, int],
) -> av.video.stream.VideoStream:
    """Configure the encoder once: constant frame rate in a 1/fps time base, fixed GOP, colour tags kept."""
    stream = container.add_stream(settings.codec, rate=rate)
    cc = stream.codec_context
    stream.width = width
    stream.height = height
    stream.pix_fmt = pix_fmt
    cc.time_base = Fraction(rate.denominator, rate.numerator)
    cc.framerate = rate
    cc.gop_size = max(1, round(settings.gop_seconds * float(rate)))
    cc.thread_count = settings.threads or (os.cpu_count() or 1 if settings.codec in SOFTWARE_X26X else 0)
    if settings.codec in SOFTWARE_X26X:
        # PyAV defaults encoders to slice threads; x264's frame threads give ~15 % more throughput
        # and no per-frame slices (smaller files), at the cost of latency we do not care about.
        cc.thread_type = "FRAME"
    for name, value in color.items():
        with contextlib.suppress(AttributeError, ValueError, TypeError):  # tags are cosmetic
            setattr(cc, name, value)
    options: dict[str, str] = {}
    if settings.codec in SOFTWARE_X26X:
        options["preset"] = settings.preset
        if settings.bitrate:
            stream.bit_rate = settings.bitrate
            options["maxrate"] = str(settings.bitrate)
            options["bufsize"] = str(2 * settings.bitrate)
        elif settings.crf is not None:
            options["crf"] = str(settings.crf)
    else:
        stream.bit_rate = settings.bitrate or default_bitrate(width, height, rate)
    stream.options = options
    return stream


class AudioTrack:
    """An AAC track written on a sample-exact timeline, with silence wherever no source covers it.

    Sources are placed at absolute sample positions; gaps are filled with zeros, overlaps trimmed.
    Encoding is driven by the video position (`encode_until`) so audio and video packets stay
    interleaved in the file and buffered samples stay bounded.
    """

    def __init__(
        self, container: av.container.OutputContainer, rate: int, layout: str, bit_rate: int = 128_000
    ) -> None:
        self.container = container
        self.rate = rate
        self.layout = layout
        self.stream = container.add_stream("aac", rate=rate)
        self.stream.layout = layout
        self.stream.bit_rate = bit_rate if layout != "mono" else min(bit_rate, 96_000)
        self.channels = self.stream.codec_context.layout.nb_channels
        self.limit: int | None = None  # samples at or after this position are discarded
        self.tolerance = max(1, rate // 20)  # timestamp jitter below 50 ms is not a gap
        self._pending: deque[np.ndarray | int] = deque()  # sample arrays, or ints = that much silence
        self._pending_len = 0
        self._cursor = 0  # position right after the last buffered sample
        self._encoded = 0  # samples already handed to the encoder
        self._time_base = Fraction(1, rate)

    @property
    def cursor(self) -> int:
        return self._cursor

    def resampler(self) -> AudioResampler:
        """One per source: resamplers keep state and lock onto their first input format."""
        return AudioResampler(format="fltp", layout=self.layout, rate=self.rate)

    def samples_at(self, seconds: float) -> int:
        return round(seconds * self.rate)

    def place(self, data: np.ndarray, pos: int | None) -> None:
        """Put (channels, n) float32 samples at `pos` (None = right after the previous ones)."""
        if data.ndim == 1:
            data = data[None, :]
        if pos is not None:
            if pos > self._cursor + self.tolerance:
                self._silence(pos - self._cursor)
            elif pos < self._cursor - self.tolerance:
                data = data[:, self._cursor - pos :]
        if self.limit is not None:
            data = data[:, : max(0, self.limit - self._cursor)]
        if data.shape[1]:
            self._append(np.ascontiguousarray(data, dtype=np.float32))

    def pad_to(self, pos: int) -> None:
        if self.limit is not None:
            pos = min(pos, self.limit)
        if pos > self._cursor:
            self._silence(pos - self._cursor)

    def cut(self, pos: int) -> None:
        """Make the timeline end exactly at `pos`: pad with silence or drop buffered samples past it."""
        if pos >= self._cursor:
            self._silence(pos - self._cursor)
            return
        pos = max(pos, self._encoded)
        excess = self._cursor - pos
        while excess > 0 and self._pending:
            n = _length(self._pending[-1])
            if n <= excess:
                self._pending.pop()
                excess -= n
                self._pending_len -= n
            else:
                last = self._pending[-1]
                self._pending[-1] = last - excess if isinstance(last, int) else last[:, : n - excess]
                self._pending_len -= excess
                excess = 0
        self._cursor = pos

    def encode_until(self, pos: int) -> None:
        """Encode whole AAC frames that end at or before `pos` (the video's current end)."""
        while self._pending_len >= AAC_FRAME and self._encoded + AAC_FRAME <= pos:
            self._encode(self._take(AAC_FRAME))

    def finish(self, end: int) -> None:
        """Close the timeline at `end` samples and flush everything, last partial frame included."""
        self.limit = None
        self.cut(end)
        while self._pending_len:
            self._encode(self._take(min(AAC_FRAME, self._pending_len)))
        self.container.mux(self.stream.encode(None))

    def _silence(self, n: int) -> None:
        """Silence is buffered as a sample count, so an hour of it costs nothing until encoded."""
        if n > 0:
            self._pending.append(n)
            self._pending_len += n
            self._cursor += n

    def _append(self, data: np.ndarray) -> None:
        self._pending.append(data)
        self._pending_len += data.shape[1]
        self._cursor += data.shape[1]

    def _take(self, n: int) -> np.ndarray:
        parts: list[np.ndarray] = []
        need = n
        while need:
            head = self._pending[0]
            size = _length(head)
            take = min(size, need)
            if isinstance(head, int):
                parts.append(np.zeros((self.channels, take), np.float32))
                rest: np.ndarray | int = head - take
            else:
                parts.append(head[:, :take])
                rest = head[:, take:]
            if take == size:
                self._pending.popleft()
            else:
                self._pending[0] = rest
            need -= take
        self._pending_len -= n
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _encode(self, data: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self._encoded
        frame.time_base = self._time_base
        self._encoded += data.shape[1]
        self.container.mux(self.stream.encode(frame))


def _length(item: np.ndarray | int) -> int:
    return item if isinstance(item, int) else item.shape[1]

