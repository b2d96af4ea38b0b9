"""Check uploaded media before it is stored: a bad file is refused here, never reaches the worker.

First the magic bytes (cheap, and the declared Content-Type is never trusted), then the header's
dimensions (before any decoding: PNG bombs), then one real decode with PyAV (truncated or corrupt
files), all bounded by the limits below.
"""

from __future__ import annotations

import struct
from pathlib import Path

import av

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_LOGO_SIDE = 4096
MAX_LOGO_BYTES = 5 * 1024 * 1024
MAX_INTRO_SIDE = 4096
MAX_INTRO_SECONDS = 60.0


class MediaRejected(ValueError):
    pass


def check_logo(path: Path) -> tuple[int, int]:
    """A PNG whose header is sane and whose pixels decode; returns (width, height)."""
    if path.stat().st_size > MAX_LOGO_BYTES:
        raise MediaRejected(f"logo is larger than {MAX_LOGO_BYTES // (1024 * 1024)} MB")
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise MediaRejected("logo must be a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    if not (0 < width <= MAX_LOGO_SIDE and 0 < height <= MAX_LOGO_SIDE):
        raise MediaRejected(f"logo is {width}x{height}; at most {MAX_LOGO_SIDE}x{MAX_LOGO_SIDE} is accepted")
    try:
        with av.open(str(path), format="png_pipe") as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise MediaRejected(f"logo PNG does not decode: {exc}") from exc
    if (frame.width, frame.height) != (width, height):
        raise MediaRejected("logo PNG header and image data disagree")
    return width, height


def _sniff_container(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".mkv"
    raise MediaRejected("intro must be an MP4, MOV, MKV or WebM video")


def check_intro(path: Path) -> str:
    """An MP4/MOV or Matroska/WebM with a decodable video stream within the limits; returns the extension."""
    ext = _sniff_container(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaRejected("intro has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not (0 < width <= MAX_INTRO_SIDE and 0 < height <= MAX_INTRO_SIDE):
                raise MediaRejected(f"intro is {width}x{height}; at most {MAX_INTRO_SIDE}x{MAX_INTRO_SIDE}")
            seconds = container.duration / av.time_base if container.duration else 0.0
            if seconds > MAX_INTRO_SECONDS:
                raise MediaRejected(f"intro is {seconds:.1f} s long; at most {MAX_INTRO_SECONDS:g} s is accepted")
            next(container.decode(stream))
    except MediaRejected:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise MediaRejected(f"intro does not decode as video: {exc}") from exc
    return ext
