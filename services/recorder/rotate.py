"""CAMERA_ROTATION for a camera mounted sideways or upside down.

Decoded sources are turned in pixels (a libavfilter transpose / flip), so every later step sees
upright frames. Remuxed packets cannot be turned without a re-encode, so they carry a display
matrix instead (players and ffmpeg-based decoders honour it); the worker keeps it in the finished
video and turns the intro and logos to match (docs/video.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from fractions import Fraction

import av

from services.recorder.camera import Camera, CapturedFrame

_FILTERS = {90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "cclock")]}


def rotated(camera: Camera, degrees: int) -> Camera:
    degrees %= 360
    if degrees == 0 or getattr(camera, "rotation_applied", False):
        return camera
    if degrees not in _FILTERS:
        raise ValueError(f"rotation must be 0, 90, 180 or 270 degrees, not {degrees}")
    if camera.encoded is not None:
        camera.encoded = dataclasses.replace(camera.encoded, display_rotation=degrees)
        return camera
    return RotatedCamera(camera, degrees)


class RotatedCamera:
    encoded = None

    def __init__(self, inner: Camera, degrees: int) -> None:
        self.inner = inner
        self.degrees = degrees
        self.fps = inner.fps
        swap = degrees in (90, 270)
        self.width, self.height = (inner.height, inner.width) if swap else (inner.width, inner.height)

    def _graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                time_base=Fraction(1, self.fps))
        for name, args in _FILTERS[self.degrees]:
            nxt = graph.add(name, args)
            node.link_to(nxt)
            node = nxt
        sink = graph.add("buffersink")
        node.link_to(sink)
        graph.configure()
        return graph

    def frames(self) -> Iterator[CapturedFrame]:
        graph: av.filter.Graph | None = None
        for n, item in enumerate(self.inner.frames()):
            if graph is None:
                graph = self._graph(item.frame)
            item.frame.pts, item.frame.time_base = n, Fraction(1, self.fps)
            graph.push(item.frame)
            out = graph.pull()
            out.pts = None
            yield CapturedFrame(out, item.captured_at)

    def close(self) -> None:
        self.inner.close()
