"""Intro frames fitted to the recording: scale keeping aspect, pad black, convert rate and format.

The rate conversion is libavfilter's `fps` filter (drops/duplicates by timestamp, constant rate out)
rather than re-stamping frames, so an intro at 25 fps keeps its real duration in a 30 fps output.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter


class IntroFitter:
    """buffer -> scale -> pad -> setsar -> fps -> format -> buffersink, fed one decoded frame at a time."""

    def __init__(
        self,
        first: av.VideoFrame,
        width: int,
        height: int,
        rate: Fraction,
        pix_fmt: str = "yuv420p",
        full_range: bool = False,
    ) -> None:
        self._width = first.width
        self._height = first.height
        self._format = first.format.name
        self._time_base = first.time_base or Fraction(1, 90_000)
        self._next_pts = 0
        graph = av.filter.Graph()
        src = graph.add_buffer(width=first.width, height=first.height, format=first.format, time_base=self._time_base)
        scale_args = f"{width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2"
        if full_range and pix_fmt == "yuv420p":
            scale_args += ":out_range=full"
        chain = [
            src,
            graph.add("scale", scale_args),
            graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black"),
            graph.add("setsar", "1"),
            graph.add("fps", f"fps={rate.numerator}/{rate.denominator}"),
            graph.add("format", pix_fmt),
            graph.add("buffersink"),
        ]
        graph.link_nodes(*chain).configure()
        self._graph = graph

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Feed one intro frame; returns the output-rate frames that became ready."""
        if frame.width != self._width or frame.height != self._height or frame.format.name != self._format:
            # buffersrc cannot change geometry mid-stream; normalise the rare odd frame instead
            converted = frame.reformat(width=self._width, height=self._height, format=self._format)
            converted.pts, converted.time_base = frame.pts, frame.time_base
            frame = converted
        if frame.pts is None:
            frame.pts = self._next_pts
        frame.time_base = self._time_base
        self._next_pts = frame.pts + max(1, frame.duration or 1)
        self._graph.vpush(frame)
        return self._drain()

    def flush(self) -> list[av.VideoFrame]:
        """Signal end of intro; the fps filter then emits frames up to the intro's end time."""
        self._graph.vpush(None)
        return self._drain()

    def _drain(self) -> list[av.VideoFrame]:
        out: list[av.VideoFrame] = []
        while True:
            try:
                out.append(self._graph.vpull())
            except (av.BlockingIOError, av.EOFError):
                return out
