"""Writes one part of a booking's recording: H.264 in fragmented MP4, readable even after a kill -9.

Timestamps are the capture times relative to the booking's start, so parts written by
successive recorder runs join into one continuous timeline by packet copy.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


class PartWriter:
    def __init__(self, path: Path, *, width: int, height: int, fps: int, origin: datetime) -> None:
        self.path = path
        self.fps = fps
        self.origin = origin
        self.frames = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self._last_pts = -1
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(path), "w", format="mp4", options=FRAGMENTED)
        stream = self._out.add_stream(
            "libx264", rate=fps,
            options={"preset": "ultrafast", "tune": "zerolatency", "g": str(fps), "bf": "0"},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # The muxer picks its own stream time base; frames keep ours (1/fps) and PyAV rescales.
        self._time_base = Fraction(1, fps)
        stream.codec_context.time_base = self._time_base
        self._stream = stream

    def write(self, frame: av.VideoFrame, captured_at: datetime) -> None:
        pts = round((captured_at - self.origin).total_seconds() * self.fps)
        if pts <= self._last_pts:
            return
        frame.pts, frame.time_base = pts, self._time_base
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        self._last_pts = pts
        self.frames += 1
        self.first_at = self.first_at or captured_at
        self.last_at = captured_at

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        with open(self.path, "rb") as fh:
            os.fsync(fh.fileno())
