"""PyAV camera sources: lavfi test patterns, V4L2 devices, network streams and files."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av

from services.recorder.camera import Camera, CameraError, CapturedFrame, CapturedPacket, EncodedFormat
from shared import failpoints

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "srt", "udp", "tcp")
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_STALLS = 2
"""A blocked read gives up after this many CAMERA_STALL_S. The recorder's watchdog (CameraFeed) decides a stall
after one: FFmpeg's RTSP demuxer hands over the last packet it holds back when a read times out, and a timeout
equal to the stall time delivered that stale packet just before the watchdog fired, hiding every freeze shorter
than two stall times. The read timeout only frees the thread of a camera the recorder has abandoned."""
SENSOR_BUFFERS = 4
"""Frames a camera driver queues for a late reader (V4L2 and libcamera typically keep 4-6)."""


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def open_source(source: str, width: int, height: int, fps: int, stall_s: float, bitrate: int = 0,
                rotation: int = 0) -> Camera:
    try:
        if source == "synthetic":
            return SyntheticCamera(width, height, fps)
        if source.startswith("lavfi:"):
            return SyntheticCamera(width, height, fps, graph=source.removeprefix("lavfi:"))
        if source.startswith(("/dev/video", "v4l2:")):
            return V4l2Camera(source.removeprefix("v4l2:"), width, height, fps, stall_s)
        if source.startswith("file:"):
            return FileCamera(Path(source.removeprefix("file:")))
        if urlsplit(source).scheme in NETWORK_SCHEMES:
            return NetworkCamera(source, fps, stall_s)
        if source in PICAMERA2_SOURCES:
            return _picamera2(source, width, height, fps, bitrate, rotation)
    except (av.FFmpegError, OSError) as exc:
        raise CameraError(f"cannot open camera {_redact(source)}: {_scrub(exc, source)}") from None
    raise CameraError(f"unknown CAMERA_SOURCE {source!r}: use synthetic, lavfi:<graph>, /dev/videoN, "
                      "rtsp://…, http(s)://…, file:<path> or picamera2[:frames|:encoder]")


PICAMERA2_SOURCES = ("picamera2", "picamera2:frames", "picamera2:encoder")


def _picamera2(source: str, width: int, height: int, fps: int, bitrate: int, rotation: int) -> Camera:
    """`picamera2`: Picamera2's hardware encoder on a Pi 4, raw frames encoded here on a Pi 5 (no hardware
    encoder: the recorder's one encode then replaces Picamera2's software one); `:frames` / `:encoder` force
    either."""
    from services.recorder.picam_frames import Picamera2Frames, hardware_encoder_available

    mode = source.partition(":")[2] or ("encoder" if hardware_encoder_available() else "frames")
    if mode == "frames":
        return Picamera2Frames(width, height, fps, rotation)
    from services.recorder.picam import Picamera2Camera

    return Picamera2Camera(width, height, fps, bitrate, rotation)


def _scrub(exc: BaseException, source: str) -> str:
    """FFmpeg errors quote the URL they failed on: keep its credentials out of the message."""
    return str(exc).replace(source, _redact(source))


def _redact(source: str) -> str:
    """Camera URLs often carry credentials (rtsp://user:pass@host): keep them out of logs and faults."""
    parts = urlsplit(source)
    if parts.password or parts.username:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return parts._replace(netloc=f"***@{host}{port}").geturl()
    return source


class StreamClock:
    """Maps a stream's own timestamps to wall-clock capture times.

    capture = media time + offset, where the offset is the smallest (arrival - media time) seen:
    the packet that waited least in buffers and networks tells the camera's clock best. A burst of
    buffered packets at open (stream probing, during the warm-up) only lowers the offset; after
    that times are as smooth as the camera's clock, which keeps remuxed timestamps monotonic. An
    offset that grows by more than `tolerance_s` (a timestamp reset, a clock step) re-anchors.
    """

    def __init__(self, tolerance_s: float = 2.0) -> None:
        self.tolerance_s = tolerance_s
        self._offset: float | None = None

    def at(self, media_s: float | None) -> datetime:
        now = time.time()
        if media_s is None:
            return _utc(now)
        offset = now - media_s
        if self._offset is None or offset < self._offset:
            self._offset = offset
        elif offset - self._offset > self.tolerance_s:
            log.warning("camera clock re-anchored (late by %.1fs)", offset - self._offset)
            self._offset = offset
        return _utc(media_s + self._offset)


class SyntheticCamera:
    """A lavfi pattern paced at real time, with frames on the epoch-aligned 1/fps grid.

    Aligning frame times to the grid makes a booking that starts on a whole second start
    exactly on a frame. Like a sensor with a driver queue of SENSOR_BUFFERS frames, a reader that
    is briefly late still gets every frame (stamped when it was due); one further behind loses the
    frames that did not fit, as a real camera would.
    """

    encoded = None

    def __init__(self, width: int, height: int, fps: int, graph: str | None = None) -> None:
        graph = graph or f"testsrc2=size={width}x{height}:rate={fps},format=yuv420p"
        self._container = av.open(graph, format="lavfi")
        self._stream = self._container.streams.video[0]
        ctx = self._stream.codec_context
        self.width, self.height = ctx.width or width, ctx.height or height
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = round(float(rate)) if rate else fps
        self.dropped = 0
        self._freeze = failpoints.camera_freeze_file()

    def frames(self) -> Iterator[CapturedFrame]:
        period = 1.0 / self.fps
        tick = math.ceil(time.time() * self.fps)
        for frame in self._container.decode(self._stream):
            failpoints.hold_while_frozen(self._freeze)
            due = tick / self.fps
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            elif -delay > SENSOR_BUFFERS * period:
                # Behind by more than the driver queue: skip ahead, like a sensor whose buffers overflowed.
                missed = int(-delay * self.fps) - SENSOR_BUFFERS + 1
                self.dropped += missed
                tick += missed
                due = tick / self.fps
            frame.pts = None
            yield CapturedFrame(frame, _utc(due))
            tick += 1

    def close(self) -> None:
        self._container.close()


class V4l2Camera:
    """A V4L2 device (USB webcam, capture card), decoded here and encoded by the segment writer."""

    encoded = None

    def __init__(self, device: str, width: int, height: int, fps: int, stall_s: float) -> None:
        if not Path(device).exists():
            raise CameraError(f"V4L2 device {device} does not exist")
        self._container = av.open(device, format="v4l2", timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_STALLS * stall_s),
                                  options={"video_size": f"{width}x{height}", "framerate": str(fps)})
        self._stream = self._container.streams.video[0]
        ctx = self._stream.codec_context
        self.width, self.height = ctx.width or width, ctx.height or height
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = round(float(rate)) if rate else fps
        self._clock = StreamClock()

    def frames(self) -> Iterator[CapturedFrame]:
        try:
            for frame in self._container.decode(self._stream):
                yield CapturedFrame(frame, self._clock.at(frame.time))
        except av.FFmpegError as exc:
            raise CameraError(f"V4L2 read failed: {exc}") from exc
        raise CameraError("V4L2 device stopped delivering frames")

    def close(self) -> None:
        self._container.close()


def _packet_format(stream: av.video.stream.VideoStream, fps: int) -> EncodedFormat:
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    return EncodedFormat(template=stream, codec_name=ctx.name, width=ctx.width, height=ctx.height,
                         fps=round(float(rate)) if rate else fps)


class NetworkCamera:
    """An IP camera's stream (RTSP, HTTP, …): packets go to the segments as they are, no re-encode."""

    def __init__(self, url: str, fps: int, stall_s: float) -> None:
        options = {"rtsp_transport": "tcp"} if url.startswith(("rtsp:", "rtsps:")) else {}
        self._url = url
        self._container = av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_STALLS * stall_s))
        if not self._container.streams.video:
            self._container.close()
            raise CameraError(f"{_redact(url)} carries no video stream")
        self._stream = self._container.streams.video[0]
        self.encoded = _packet_format(self._stream, fps)
        self.width, self.height, self.fps = self.encoded.width, self.encoded.height, self.encoded.fps
        self._clock = StreamClock()

    def frames(self) -> Iterator[CapturedPacket]:
        tb = self._stream.time_base
        try:
            for packet in self._container.demux(self._stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or stamp is None or tb is None:
                    continue
                yield CapturedPacket(packet, self._clock.at(float(stamp * tb)), packet.is_keyframe)
        except av.FFmpegError as exc:
            raise CameraError(f"stream {_redact(self._url)} failed: {_scrub(exc, self._url)}") from None
        raise CameraError(f"stream {_redact(self._url)} ended")

    def close(self) -> None:
        self._container.close()


class FileCamera:
    """A recording replayed as a live camera: packets paced at real time, looped, remuxed.

    For testing the remux path end to end, and for demos without a camera.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise CameraError(f"camera file {path} does not exist")
        self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise CameraError(f"{path} has no video stream")
        self._stream = self._container.streams.video[0]
        self.encoded = _packet_format(self._stream, 30)
        self.width, self.height, self.fps = self.encoded.width, self.encoded.height, self.encoded.fps

    def frames(self) -> Iterator[CapturedPacket]:
        tb = self._stream.time_base or Fraction(1, 90000)
        frame_s = 1.0 / self.fps
        start_wall = time.time()
        offset = 0.0
        while True:
            first: float | None = None
            last = 0.0
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                pts = float(packet.pts * tb)
                dts = float(packet.dts * tb) if packet.dts is not None else pts
                first = dts if first is None else first
                last = max(last, pts - first)
                delay = start_wall + offset + (dts - first) - time.time()
                if delay > 0:
                    time.sleep(delay)
                yield CapturedPacket(packet, _utc(start_wall + offset + (pts - first)), packet.is_keyframe)
            if first is None:
                raise CameraError("camera file holds no packets")
            offset += last + frame_s
            self._container.seek(0)

    def close(self) -> None:
        self._container.close()
