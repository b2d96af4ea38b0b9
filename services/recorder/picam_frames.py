"""The Raspberry Pi camera's raw frames, encoded by the recorder itself: the Pi 5's path.

A Pi 5 has no hardware H.264 encoder: Picamera2's H264Encoder there is libx264 in software, the same
encoder the recorder runs for every raw-frame source. Letting the recorder do that one encode instead
gives the Pi camera what V4L2 and the synthetic camera already have: the booking's logos blended by
the segment writer, the capture settings of docs/capture.md, segments stamped with their format, and an
intro prepared with the same encoder, so the worker finishes the booking by remux and no frame is encoded
twice. On a Pi 4 the hardware encoder is the cheaper one and Picamera2 keeps it (picam.py).

Picamera2's event loop calls `pre_callback` for every completed request, with or without an encoder
attached; the callback copies the YUV420 main stream out of the camera's buffer (the buffer goes back to
libcamera when the callback returns) into a frame queued for the recorder. A recorder that falls behind
loses the frames that do not fit, as a sensor whose buffers overflow would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from services.recorder.camera import CameraError, CapturedFrame
from services.recorder.picam import Handoff, SensorClock, i420_planes, start_camera

log = logging.getLogger(__name__)

QUEUE_FRAMES = 8
"""Frames held for a recorder that is briefly late (about a quarter of a second at 30 fps)."""
AVCOL_SPC_BT709, AVCOL_SPC_SMPTE170M, AVCOL_RANGE_MPEG = 1, 6, 1


def hardware_encoder_available() -> bool:
    """True on a Pi 4 (VC4: Picamera2's H264Encoder is the hardware one); False on a Pi 5 (PiSP)."""
    try:
        from picamera2.platform import Platform, get_platform  # type: ignore[import-not-found]
    except ImportError:
        return False
    return get_platform() == Platform.VC4


class Picamera2Frames:
    encoded = None

    def __init__(self, width: int, height: int, fps: int, rotation: int) -> None:
        try:
            from libcamera import Transform  # type: ignore[import-not-found]
            from picamera2 import MappedArray, Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraError(f"picamera2 is not available ({exc}); it runs on a Raspberry Pi only "
                              "(apt install python3-picamera2)") from exc
        self.width, self.height, self.fps = width & ~1, height & ~1, fps
        flip = rotation % 360 == 180
        # The ISP flips for free; a quarter turn is done in pixels by rotate.py, as for V4L2.
        self.rotation_applied = rotation % 360 in (0, 180)
        # libcamera's default video colour space: Rec709 from 1280x720 up, else SMPTE 170M, both limited range.
        self._colorspace = AVCOL_SPC_BT709 if self.width >= 1280 and self.height >= 720 else AVCOL_SPC_SMPTE170M
        self._handoff: Handoff[CapturedFrame] = Handoff(maxsize=QUEUE_FRAMES)
        self._clock = SensorClock()
        self._mapped = MappedArray
        self._copy_failed = False
        self.dropped = 0
        self._cam = start_camera(Picamera2, Transform(hflip=flip, vflip=flip), (self.width, self.height), fps,
                                 self._take, lambda cam: cam.start())

    def _take(self, request: Any) -> None:
        """pre_callback (the camera's thread): the frame copied out of the request's buffer, never blocking."""
        try:
            sensor_ns = request.get_metadata().get("SensorTimestamp")
            at = self._clock.at(None if sensor_ns is None else sensor_ns / 1e9)
            with self._mapped(request, "main") as mapped:
                frame = i420_frame(*i420_planes(mapped.array, self.width, self.height))
        except Exception:  # a frame that cannot be copied is a dropped frame, never a stopped camera
            if not self._copy_failed:
                self._copy_failed = True
                log.exception("copying a Pi camera frame failed; such frames are dropped")
            return
        frame.colorspace = self._colorspace
        frame.color_range = AVCOL_RANGE_MPEG
        if not self._handoff.offer(CapturedFrame(frame, at)):
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("Pi camera frames dropped: the recorder is behind (%d so far)", self.dropped)

    def frames(self) -> Iterator[CapturedFrame]:
        return self._handoff.items()

    def close(self) -> None:
        self._handoff.closed = True
        try:
            self._cam.stop()
        finally:
            self._cam.close()


def i420_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame holding copies of these planes (views into a camera buffer are padded rows)."""
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, src in zip(frame.planes, (y, u, v), strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        rows[: src.shape[0], : src.shape[1]] = src
    return frame
