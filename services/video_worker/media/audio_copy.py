"""The output's audio when only the intro has any: its AAC packets copied, then silence, no encoder at all.

A prepared intro (intro.py) ends its audio with a few frames of encoded digital silence. An AAC frame
of silence whose predecessor was silence too decodes to zeros whatever follows, so repeating the last
packet extends the track by any length for free and stays sample exact: the encoder's priming
(the first packet, before zero) is the intro's and sits at the start of the file, where players
expect it; nothing is primed again at the join.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

AAC_FRAME = 1024


class SilenceUnavailable(Exception):
    """The prepared audio does not end in repeated identical silent frames (cannot be extended by copy)."""


@dataclass(frozen=True)
class _Packet:
    data: bytes
    pts: int  # in samples
    duration: int


class AudioCopier:
    """Mux the intro's audio packets, then repeat its silent frame, interleaved with the video by `advance`."""

    def __init__(self, container: av.container.OutputContainer, prepared: Path) -> None:
        with av.open(str(prepared)) as src:
            if not src.streams.audio:
                raise SilenceUnavailable(f"{prepared.name} has no audio")
            stream = src.streams.audio[0]
            self.rate = stream.codec_context.sample_rate
            tb = stream.time_base or Fraction(1, self.rate)
            packets = []
            for packet in src.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                pts = round(packet.pts * tb * self.rate)
                duration = round((packet.duration or AAC_FRAME) * tb * self.rate)
                packets.append(_Packet(bytes(packet), pts, duration))
            if len(packets) < 3 or packets[-1].data != packets[-2].data or packets[-1].duration != AAC_FRAME:
                raise SilenceUnavailable(f"{prepared.name} does not end in repeated silent AAC frames")
            self.stream = container.add_stream_from_template(stream)
        self._packets = packets
        self._silent = packets[-1].data
        self._next = 0  # index into _packets of the next one to mux
        self._cursor = packets[0].pts  # sample position where the next packet starts
        self._time_base = Fraction(1, self.rate)
        self._container = container

    def advance(self, pos: int) -> None:
        """Mux every packet that starts before sample `pos` (the video's current end)."""
        while self._cursor < pos:
            self._mux(self._take(), AAC_FRAME)

    def finish(self, end: int) -> None:
        """Close the track at sample `end`: the last packet's duration is cut so players trim it there."""
        while self._cursor < end:
            packet = self._take()
            self._mux(packet, min(AAC_FRAME, end - self._cursor))

    def _take(self) -> bytes:
        if self._next < len(self._packets):
            packet = self._packets[self._next]
            self._next += 1
            self._cursor = packet.pts
            return packet.data
        return self._silent

    def _mux(self, data: bytes, duration: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = self._cursor
        packet.duration = duration
        packet.time_base = self._time_base
        packet.stream = self.stream
        self._container.mux(packet)
        self._cursor += AAC_FRAME
