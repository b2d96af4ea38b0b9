"""Sniff uploaded media before it is stored: a bad file is refused here, never reaches the worker."""

from __future__ import annotations

import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_LOGO_SIDE = 4096
MAX_LOGO_BYTES = 5 * 1024 * 1024


class MediaRejected(ValueError):
    pass


def check_logo(path: Path) -> tuple[int, int]:
    """A PNG whose header is sane; dimensions are read before any decoding (PNG bombs)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise MediaRejected("logo must be a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    if not (0 < width <= MAX_LOGO_SIDE and 0 < height <= MAX_LOGO_SIDE):
        raise MediaRejected(f"logo is {width}x{height}; at most {MAX_LOGO_SIDE}x{MAX_LOGO_SIDE} is accepted")
    if path.stat().st_size > MAX_LOGO_BYTES:
        raise MediaRejected(f"logo is larger than {MAX_LOGO_BYTES // (1024 * 1024)} MB")
    return width, height


def check_intro(path: Path) -> str:
    """An MP4/MOV (ftyp box) or Matroska/WebM (EBML) container; returns the file extension to keep."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".mkv"
    raise MediaRejected("intro must be an MP4, MOV, MKV or WebM video")
