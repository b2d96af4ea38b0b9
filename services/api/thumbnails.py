"""One JPEG per video for the dashboard: a frame from the middle (at most 15 s in), decoded with PyAV.

Cached under DATA_DIR/cache/thumbnails, keyed by video id and file size, so a re-processed video
gets a new thumbnail and a request after the first costs one stat().
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av

from shared.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
_AT_MOST_S = 15.0


class ThumbnailError(Exception):
    pass


def _pick_frame(video: Path) -> av.VideoFrame:
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise ThumbnailError("no video stream")
        stream = container.streams.video[0]
        duration = container.duration / av.time_base if container.duration else 0.0
        target = min(duration * 0.5, _AT_MOST_S)
        if target > 0 and stream.time_base is not None:
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        frame = None
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= target:
                break
        if frame is None:
            raise ThumbnailError("no decodable frame")
        return frame


def encode_jpeg(frame: av.VideoFrame, width: int = THUMBNAIL_WIDTH) -> bytes:
    height = max(2, round(width * frame.height / frame.width / 2) * 2)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": "2", "qmax": "5"}
    packets = [*codec.encode(image), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)


class ThumbnailCache:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def get(self, video_id: str, video: Path) -> Path:
        """The cached JPEG, made now if missing. Raises ThumbnailError for an undecodable file."""
        target = self.cache_dir / f"{video_id}-{video.stat().st_size}.jpg"
        if target.is_file():
            return target
        try:
            data = encode_jpeg(_pick_frame(video))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ThumbnailError(f"cannot decode {video.name}: {exc}") from exc
        write_bytes_atomic(target, data)
        for stale in self.cache_dir.glob(f"{video_id}-*.jpg"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target
