"""The output's AAC audio track: gap-free, sample-exact, interleaved with the video by position."""

from __future__ import annotations

from collections import deque
from fractions import Fraction

import av
import numpy as np
from av.audio.resampler import AudioResampler

AAC_FRAME = 1024


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

