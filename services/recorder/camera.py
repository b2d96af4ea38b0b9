"""Camera sources behind one interface.

A camera yields either decoded frames (the recorder encodes them: synthetic/lavfi, V4L2) or
already-encoded packets (the recorder remuxes them, no re-encode: RTSP/HTTP IP cameras, a file,
Picamera2's hardware encoder on a Pi 4). Each item carries its capture time as aware UTC.

CAMERA_SOURCE:
  synthetic                lavfi testsrc2 paced at real time (the default off the Pi)
  lavfi:<graph>            any lavfi graph, e.g. `lavfi:smptebars=size=1280x720:rate=25`
  /dev/videoN | v4l2:<dev> a V4L2 device, decoded and encoded here
  rtsp://… http(s)://…     an IP camera's H.264/H.265 stream, remuxed
  file:<path>              a recording replayed as a live source (looped, paced), remuxed
  picamera2                the Raspberry Pi camera (Pi only): raw frames encoded here on a Pi 5 (picam_frames.py),
                           Picamera2's hardware encoder remuxed on a Pi 4 (picam.py); `picamera2:frames` /
                           `picamera2:encoder` force either
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import av

from shared.settings import Settings


@dataclass
class CapturedFrame:
    frame: av.VideoFrame
    captured_at: datetime


@dataclass
class CapturedPacket:
    packet: av.Packet
    captured_at: datetime
    keyframe: bool
    after_gap: bool = False
    """Packets were lost just before this one: a remuxed stream must restart at a keyframe."""


Captured = CapturedFrame | CapturedPacket


@dataclass(frozen=True)
class EncodedFormat:
    """How a packet camera's segments are set up: copy the input stream, or describe it (Picamera2)."""

    template: av.video.stream.VideoStream | None
    codec_name: str
    width: int
    height: int
    fps: int
    display_rotation: int = 0
    """Clockwise degrees a player should rotate by (remuxed pixels cannot be turned)."""


class CameraError(Exception):
    """The camera could not be opened or failed while running."""


class CameraStalled(CameraError):
    """No frame arrived for CAMERA_STALL_S."""


class Camera(Protocol):
    width: int
    height: int
    fps: int
    encoded: EncodedFormat | None
    """None: frames() yields CapturedFrame to encode; otherwise CapturedPacket in this format."""

    def frames(self) -> Iterator[Captured]:
        """Items at the camera's real pace, each stamped with its capture time (aware UTC)."""
        ...

    def close(self) -> None: ...


def open_camera(settings: Settings) -> Camera:
    """The configured source, with rotation applied (pixels for encoded sources, metadata for remux)."""
    from services.recorder import pyav_cameras
    from services.recorder.rotate import rotated

    camera = pyav_cameras.open_source(settings.camera_source, settings.camera_width, settings.camera_height,
                                      settings.camera_fps, settings.camera_stall_s, settings.camera_bitrate,
                                      settings.camera_rotation)
    return rotated(camera, settings.camera_rotation)
