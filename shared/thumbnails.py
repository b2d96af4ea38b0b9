"""One JPEG per video for the dashboard: a frame from the middle (at most 15 s in), decoded with PyAV.

Cached under DATA_DIR/cache/thumbnails, keyed by video id and file size, so a re-processed video
gets a new thumbnail and a request after the first costs one stat(). Made when the video is uploaded (the API),
and at the latest by the disk guard before it frees a video's local copy (shared/store/cloud/store.py): a
thumbnail is kept when its video's copy goes (it is small), so the dashboard still shows it.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from shared import spliced_file
from shared.atomic import write_bytes_atomic
from shared.video_format import display_rotation

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
_AT_MOST_S = 15.0


class ThumbnailError(Exception):
    pass


def thumbnail_dir(data_dir: Path) -> Path:
    return data_dir / "cache" / "thumbnails"


URL_TIMEOUT_S = 15.0


def _pick_frame(video: Path | str) -> av.VideoFrame:
    """From a file or splice, or from a URL (a signed Storage URL: PyAV reads the index and one stretch with
    Range requests)."""
    if isinstance(video, Path):
        with spliced_file.open_read(video) as fh:
            return _frame_of(av.open(fh))
    options = {"timeout": str(int(URL_TIMEOUT_S * 1_000_000))}
    return _frame_of(av.open(video, options=options, timeout=URL_TIMEOUT_S))


def _frame_of(opened: av.container.InputContainer) -> av.VideoFrame:
    with opened as container:
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


def upright(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame as a player shows it: turned by its display matrix (a sideways-mounted camera's video)."""
    turn = display_rotation(frame)
    if not turn:
        return frame
    rgb = np.rot90(frame.to_ndarray(format="rgb24"), -turn // 90)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def encode_jpeg(frame: av.VideoFrame, width: int = THUMBNAIL_WIDTH) -> bytes:
    frame = upright(frame)
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

    def _path(self, video_id: str, size: int) -> Path:
        return self.cache_dir / f"{video_id}-{size}.jpg"

    def _make(self, video_id: str, size: int, source: Path | str, name: str) -> Path:
        try:
            data = encode_jpeg(_pick_frame(source))
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise ThumbnailError(f"cannot decode {name}: {exc}") from exc
        target = self._path(video_id, size)
        write_bytes_atomic(target, data)
        for stale in self.cache_dir.glob(f"{video_id}-*.jpg"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target

    def get(self, video_id: str, video: Path) -> Path:
        """The cached JPEG, made now if missing. Raises ThumbnailError for an undecodable file."""
        size = spliced_file.size(video)
        target = self._path(video_id, size)
        if target.is_file():
            return target
        return self._make(video_id, size, video, video.name)

    def cached(self, video_id: str, size: int | None = None) -> Path | None:
        """The kept JPEG of a video whose file is not here: the one for `size` if known, else any."""
        if size is not None and self._path(video_id, size).is_file():
            return self._path(video_id, size)
        return next(iter(sorted(self.cache_dir.glob(f"{video_id}-*.jpg"))), None)

    def from_url(self, video_id: str, size: int, url: str) -> Path:
        """For a freed video with no kept thumbnail (freed before thumbnails were kept): one frame read through
        `url`, a short-lived signed URL, then cached like any other."""
        return self._make(video_id, size, url, f"the cloud copy of video {video_id}")
