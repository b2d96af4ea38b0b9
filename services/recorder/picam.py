"""The Raspberry Pi camera through Picamera2 (Pi only; the import is guarded).

Picamera2's H264Encoder (the Pi 4's hardware encoder; a libav software encoder on the Pi 5)
hands each encoded frame to an Output. Like picamera2's own PyavOutput, this output wraps the
bytes in an av.Packet stamped with the sensor timestamp, and the segment writer muxes it with
PyAV: no re-encode, no ffmpeg subprocess, precise timestamps.

Off a Pi it runs against stand-ins of picamera2/libcamera that keep their wire contract
(tests/recorder/pi_standin.py); the real sensor and ISP are only exercised on a Pi.
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


class SensorClock:
    """Sensor time -> wall clock: anchored at the first frame, re-anchored when the two drift apart.

    The sensor's timestamps are exact, so one anchor keeps frame steps exact (unlike a network stream's
    clock, which keeps hunting for the least-delayed packet). But a Pi has no RTC: NTP often steps the
    wall clock after boot, while a session runs, and capture times must follow such a step.
    """

    def __init__(self, tolerance_s: float = 2.0) -> None:
        self.tolerance_s = tolerance_s
        self._offset: float | None = None

    def at(self, sensor_s: float | None) -> datetime:
        now = time.time()
        if sensor_s is None:
            return datetime.fromtimestamp(now, UTC)
        offset = now - sensor_s
        if self._offset is None or abs(offset - self._offset) > self.tolerance_s:
            if self._offset is not None:
                log.warning("Pi camera clock re-anchored: the wall clock moved %+.1fs", offset - self._offset)
            self._offset = offset
        return datetime.fromtimestamp(sensor_s + self._offset, UTC)


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
        self._clock = SensorClock()
        self._gap = False  # a frame was dropped: the next one queued says so, so the remux restarts cleanly
        target = self

        class _QueueOutput(Output):  # type: ignore[misc, valid-type]
            def _add_stream(self, *args: Any, **kwargs: Any) -> None:
                """Newer picamera2 versions announce streams to PyAV-style outputs; ours describes its own."""

            def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None,
                            packet: Any = None, audio: bool = False) -> None:
                if not audio:
                    target._on_frame(bytes(packet) if packet is not None else bytes(frame), keyframe, timestamp)

        self._cam = None
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
            if self._cam is not None:  # opened, then configure/start failed: release it before the retry
                try:
                    self._cam.close()
                except Exception:
                    log.debug("closing the half-opened Pi camera failed", exc_info=True)
            raise CameraError(f"Pi camera unavailable: {exc}") from exc

    def _on_frame(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """Runs on picamera2's encoder thread: sensor time (µs) mapped to the wall clock."""
        at = self._clock.at(None if timestamp_us is None else timestamp_us / 1e6)
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        try:
            self._queue.put_nowait(CapturedPacket(packet, at, keyframe, after_gap=self._gap))
        except queue.Full:
            self._gap = True
            log.warning("Pi camera frame dropped: the recorder is behind")
        else:
            self._gap = False

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
