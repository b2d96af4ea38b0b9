"""Camera sources behind one interface. Off the Pi the default is a synthetic lavfi pattern."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import av

log = logging.getLogger(__name__)


@dataclass
class CapturedFrame:
    frame: av.VideoFrame
    captured_at: datetime


class CameraError(Exception):
    pass


class Camera(Protocol):
    width: int
    height: int
    fps: int

    def frames(self) -> Iterator[CapturedFrame]:
        """Frames at the camera's real pace, each stamped with its capture time (aware UTC)."""
        ...

    def close(self) -> None: ...


class SyntheticCamera:
    """lavfi testsrc2 paced at real time, with frames on the epoch-aligned 1/fps grid.

    Aligning frame times to the grid makes a booking that starts on a whole second start
    exactly on a frame; when encoding falls behind, frames are dropped as a real sensor would.
    """

    def __init__(self, width: int, height: int, fps: int, pattern: str = "testsrc2") -> None:
        self.width, self.height, self.fps = width, height, fps
        graph = f"{pattern}=size={width}x{height}:rate={fps},format=yuv420p"
        try:
            self._container = av.open(graph, format="lavfi")
        except av.FFmpegError as exc:
            raise CameraError(f"cannot open synthetic camera {graph!r}: {exc}") from exc
        self._stream = self._container.streams.video[0]
        self.dropped = 0

    def frames(self) -> Iterator[CapturedFrame]:
        period = 1.0 / self.fps
        tick = math.ceil(time.time() * self.fps)
        for frame in self._container.decode(self._stream):
            due = tick / self.fps
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            elif -delay > period:
                # Behind by more than a frame: skip ahead to the present, like a sensor that dropped frames.
                missed = int(-delay * self.fps)
                self.dropped += missed
                tick += missed
                due = tick / self.fps
            frame.pts = None
            yield CapturedFrame(frame, datetime.fromtimestamp(due, UTC))
            tick += 1

    def close(self) -> None:
        self._container.close()


def open_camera(source: str, width: int, height: int, fps: int) -> Camera:
    if source == "synthetic":
        return SyntheticCamera(width, height, fps)
    raise CameraError(
        f"CAMERA_SOURCE={source!r} is not supported yet; use 'synthetic' (Picamera2, V4L2 and RTSP sources "
        "are planned)"
    )
