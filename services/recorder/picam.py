"""The Raspberry Pi camera through Picamera2's own encoder (Pi only; the import is guarded): the Pi 4's path.

Picamera2's H264Encoder (the Pi 4's hardware encoder) hands each encoded frame to an Output. A Pi 5 has
no hardware encoder (Picamera2's would be libx264 in software): there the recorder takes raw frames and
encodes them once itself (picam_frames.py), so this path is the Pi 4's (or `CAMERA_SOURCE=picamera2:encoder`).
Like picamera2's own PyavOutput, this output wraps the
bytes in an av.Packet stamped with the sensor timestamp, and the segment writer muxes it with
PyAV: no re-encode, no ffmpeg subprocess, precise timestamps.

The booking's logos are drawn before the encoder, in Picamera2's `pre_callback` (the camera thread,
before any encoder sees the request): `MappedArray` maps the YUV420 main stream's buffer and the
prepared logo planes are blended into its Y, U and V planes in place. The callback only looks up
logos the recorder prepared ahead (services/recorder/logos.py); it never loads a file or waits.

Off a Pi it runs against stand-ins of picamera2/libcamera that keep their wire contract
(tests/recorder/pi_standin.py); the real sensor and ISP are only exercised on a Pi.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import av
import numpy as np

from services.recorder.camera import CameraError, CapturedPacket, EncodedFormat
from services.recorder.logos import Geometry
from shared.overlay import PreparedLogo, blend_planes

log = logging.getLogger(__name__)

T = TypeVar("T")


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


class Handoff(Generic[T]):
    """Items put by picamera2's threads, which must never block, taken in order by the recorder."""

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[T] = queue.Queue(maxsize=maxsize)
        self.closed = False

    def offer(self, item: T) -> bool:
        """False when the recorder is behind and the item was dropped."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def items(self) -> Iterator[T]:
        while not self.closed:
            try:
                yield self._queue.get(timeout=1.0)
            except queue.Empty:
                continue


def start_camera(picamera2: Any, transform: Any, size: tuple[int, int], fps: int, pre_callback: Callable[[Any], None],
                 start: Callable[[Any], None]) -> Any:
    """The camera opened with a YUV420 main stream of `size` at `fps`, `pre_callback` set, then `start(camera)`.
    A camera that fails on the way is released before the CameraError, so the recorder's retry finds it free."""
    cam = None
    try:
        cam = picamera2()
        cam.configure(cam.create_video_configuration(main={"size": size, "format": "YUV420"},
                                                     controls={"FrameRate": float(fps)}, transform=transform))
        cam.pre_callback = pre_callback
        start(cam)
        return cam
    except Exception as exc:  # libcamera raises plain RuntimeErrors for a busy or missing camera
        if cam is not None:
            try:
                cam.close()
            except Exception:
                log.debug("closing the half-opened Pi camera failed", exc_info=True)
        raise CameraError(f"Pi camera unavailable: {exc}") from exc


class Picamera2Camera:
    rotation_applied = True

    def __init__(self, width: int, height: int, fps: int, bitrate: int, rotation: int) -> None:
        try:
            from libcamera import Transform  # type: ignore[import-not-found]
            from picamera2 import MappedArray, Picamera2  # type: ignore[import-not-found]
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
        self._handoff: Handoff[CapturedPacket] = Handoff(maxsize=fps * 4)
        self._clock = SensorClock()
        self._gap = False  # a frame was dropped: the next one queued says so, so the remux restarts cleanly
        # Logos are drawn on upright pixels only: a 90/270 turn is a display matrix on top of the stream.
        # libcamera's default video colour space: Rec709 from 1280x720 up, else SMPTE 170M, both limited range.
        self.logo_geometry = None if display else Geometry(width, height, bt709=width >= 1280 and height >= 720,
                                                           full_range=False)
        self.logo_source: Callable[[datetime], list[PreparedLogo]] | None = None
        """Set by the recorder: the logos of the booking that owns a frame captured at a given time."""
        self._mapped = MappedArray
        self._draw_clock = SensorClock()
        self._draw_failed = False
        target = self

        class _QueueOutput(Output):  # type: ignore[misc, valid-type]
            def _add_stream(self, *args: Any, **kwargs: Any) -> None:
                """Newer picamera2 versions announce streams to PyAV-style outputs; ours describes its own."""

            def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None,
                            packet: Any = None, audio: bool = False) -> None:
                if not audio:
                    target._on_frame(bytes(packet) if packet is not None else bytes(frame), keyframe, timestamp)

        encoder = H264Encoder(bitrate=bitrate or None, repeat=True, iperiod=fps)
        self._cam = start_camera(Picamera2, Transform(hflip=flip, vflip=flip), (width, height), fps, self._draw,
                                 lambda cam: cam.start_recording(encoder, _QueueOutput()))

    def _draw(self, request: Any) -> None:
        """pre_callback (camera thread): blend the owning booking's logos into the main stream before encoding."""
        source = self.logo_source
        if source is None or self.logo_geometry is None:
            return
        try:
            sensor_ns = request.get_metadata().get("SensorTimestamp")
            logos = source(self._draw_clock.at(None if sensor_ns is None else sensor_ns / 1e9))
            if not logos:
                return
            with self._mapped(request, "main") as mapped:
                y, u, v = i420_planes(mapped.array, self.width, self.height)
                blend_planes(y, u, v, logos)
        except Exception:  # a logo never costs a frame
            if not self._draw_failed:
                self._draw_failed = True
                log.exception("drawing the logos into the Pi camera's frame failed; frames go on without")

    def _on_frame(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """Runs on picamera2's encoder thread: sensor time (µs) mapped to the wall clock."""
        at = self._clock.at(None if timestamp_us is None else timestamp_us / 1e6)
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        self._gap = not self._handoff.offer(CapturedPacket(packet, at, keyframe, after_gap=self._gap))
        if self._gap:
            log.warning("Pi camera frame dropped: the recorder is behind")

    def frames(self) -> Iterator[CapturedPacket]:
        return self._handoff.items()

    def close(self) -> None:
        self._handoff.closed = True
        self.logo_source = None
        try:
            self._cam.stop_recording()
        finally:
            self._cam.close()


def i420_planes(array: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V views of a YUV420 buffer as MappedArray shapes it: (height * 3/2, stride), chroma rows of
    stride/2 packed after the luma rows. Views only: writing into them writes into the camera's buffer."""
    if not array.flags.c_contiguous:
        raise ValueError("the YUV420 buffer is not one contiguous block: drawing into a copy would be lost")
    stride = array.shape[1]
    flat = array.reshape(-1)
    luma, chroma = height * stride, (height // 2) * (stride // 2)
    y = flat[:luma].reshape(height, stride)[:, :width]
    u = flat[luma:luma + chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    return y, u, v
