"""The Raspberry Pi camera through Picamera2 (Pi only; the import is guarded).

Picamera2's H264Encoder (the Pi 4's hardware encoder; a libav software encoder on the Pi 5)
hands each encoded frame to an Output. Like picamera2's own PyavOutput, this output wraps the
bytes in an av.Packet stamped with the sensor timestamp, and the segment writer muxes it with
PyAV: no re-encode, no ffmpeg subprocess, precise timestamps.

Untested off a Pi: this module cannot run in CI (no libcamera, no sensor).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import av

from services.recorder.camera import CameraError, CapturedPacket, EncodedFormat

log = logging.getLogger(__name__)


class Picamera2Camera:
    rotation_applied = True

    def __init__(self, width: int, height: int, fps: int, bitrate: int, rotation: int) -> None:
        try:
            from libcamera import Transform  # type: ignore[import-not-found]
            from picamera2 import Picamera2  # type: ignore[import-not-found]
            from picamera2.encoders import H264Encoder  # type: ignore[import-not-found]
            from picamera2.outputs import Output  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraError(f"picamera2 is not available ({exc}); it runs on a Raspberry Pi only "
                              "(apt install python3-picamera2)") from exc
        self.width, self.height, self.fps = width, height, fps
        flip = rotation == 180
        display = 0 if rotation in (0, 180) else rotation  # the ISP flips, it cannot turn by 90
        self.encoded = EncodedFormat(template=None, codec_name="h264", width=width, height=height, fps=fps,
                                     display_rotation=display)
        self._queue: queue.Queue[CapturedPacket] = queue.Queue(maxsize=fps * 4)
        self._closed = False
        self._wall0: float | None = None
        self._sensor0: int | None = None
        target = self

        class _QueueOutput(Output):  # type: ignore[misc, valid-type]
            def _add_stream(self, *args: Any, **kwargs: Any) -> None:
                """Newer picamera2 versions announce streams to PyAV-style outputs; ours describes its own."""

            def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None,
                            packet: Any = None, audio: bool = False) -> None:
                if not audio:
                    target._on_frame(bytes(packet) if packet is not None else bytes(frame), keyframe, timestamp)

        try:
            self._cam = Picamera2()
            config = self._cam.create_video_configuration(
                main={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": float(fps)},
                transform=Transform(hflip=flip, vflip=flip),
            )
            self._cam.configure(config)
            encoder = H264Encoder(bitrate=bitrate or None, repeat=True, iperiod=fps)
            self._cam.start_recording(encoder, _QueueOutput())
        except Exception as exc:  # libcamera raises plain RuntimeErrors for a busy or missing camera
            raise CameraError(f"Pi camera unavailable: {exc}") from exc

    def _on_frame(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """Runs on picamera2's encoder thread: sensor time anchored to the wall clock once."""
        now = time.time()
        if timestamp_us is None or self._sensor0 is None or self._wall0 is None:
            self._wall0, self._sensor0 = now, timestamp_us or 0
        at = self._wall0 + ((timestamp_us or 0) - self._sensor0) / 1e6
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        try:
            self._queue.put_nowait(CapturedPacket(packet, datetime.fromtimestamp(at, UTC), keyframe))
        except queue.Full:
            log.warning("Pi camera frame dropped: the recorder is behind")

    def frames(self) -> Iterator[CapturedPacket]:
        while not self._closed:
            try:
                yield self._queue.get(timeout=1.0)
            except queue.Empty:
                continue

    def close(self) -> None:
        self._closed = True
        try:
            self._cam.stop_recording()
        finally:
            self._cam.close()
