"""Full-range (yuvj420p) cameras and intros give limited-range yuv420p videos, tagged tv, with the right levels.

A full-range video shown by a player that ignores the range tag has crushed blacks and clipped whites;
converting once while encoding (the frames are encoded anyway) makes every output read the same.
The test pictures are made directly in full-range Y'CbCr: a grey patch of Y = 200 on a dark field of
Y = 60, which limited range stores as 16 + Y * 219 / 255 (188 and 68).
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from services.video_worker.media.decode import MediaSource
from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.process import EncodeSettings, encode_part, process_video, recording_format
from services.video_worker.media.remux_join import join_parts

FAST = EncodeSettings(preset="ultrafast")
FPS = 15
SIZE = (320, 240)
PATCH_Y, FIELD_Y = 200, 60  # full range
PATCH = (slice(80, 160), slice(120, 200))  # rows, columns: a 16-pixel-aligned block in the middle


def limited(y_full: int) -> float:
    return 16 + y_full * 219 / 255


def full_range_file(path: Path, frames: int) -> Path:
    """H.264 yuvj420p (full range, as MJPEG-born and many IP cameras' streams are): a grey patch on a dark field."""
    w, h = SIZE
    y = np.full((h, w), FIELD_Y, np.uint8)
    y[PATCH] = PATCH_Y
    chroma = np.full((h // 2, w), 128, np.uint8)  # U and V planes, stacked as from_ndarray expects
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuvj420p"
        s.options = {"preset": "ultrafast", "qp": "0"}  # lossless: the levels going in are exact
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.concatenate([y, chroma]), format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
        assert first.format.name == "yuvj420p" or first.color_range == 2, "the source really is full range"
    return path


@pytest.fixture(scope="module")
def full_range(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("full-range")
    return full_range_file(d / "recording.mp4", 2 * FPS), full_range_file(d / "intro.mp4", FPS)


def ffprobe_video(path: Path) -> dict:
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=pix_fmt,color_range", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True, timeout=30)
    return json.loads(proc.stdout)["streams"][0]


def luma_levels(path: Path, index: int) -> tuple[float, float]:
    """(patch, field) mean of the stored Y plane of frame `index`, as the file holds them."""
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == index:
                plane = frame.planes[0]
                y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
                rows, cols = PATCH
                inner = y[rows.start + 8:rows.stop - 8, cols.start + 8:cols.stop - 8]
                return float(inner.mean()), float(y[8:40, 8:40].mean())
    raise AssertionError(f"{path.name} has no frame {index}")


def assert_limited(path: Path, intro_frames: int) -> None:
    info = ffprobe_video(path)
    assert (info["pix_fmt"], info.get("color_range")) == ("yuv420p", "tv"), info
    for index, what in ((2, "intro"), (intro_frames + 5, "recording")):
        patch, field = luma_levels(path, index)
        assert abs(patch - limited(PATCH_Y)) <= 2, f"{what}: grey patch Y {patch:.1f}, want {limited(PATCH_Y):.1f}"
        assert abs(field - limited(FIELD_Y)) <= 2, f"{what}: dark field Y {field:.1f}, want {limited(FIELD_Y):.1f}"


def test_full_range_intro_and_recording_give_a_limited_range_video(tmp_path: Path, full_range) -> None:
    recording, intro = full_range
    result = process_video(recording, tmp_path / "whole.mp4", intro=intro, encode=FAST)
    assert result.warnings == []
    assert_limited(result.output, result.intro_frames)


def test_full_range_segments_joined_after_a_full_range_intro_are_limited_range(tmp_path: Path, full_range) -> None:
    recording, intro = full_range
    src = MediaSource(recording)
    try:
        warnings: list[str] = []
        fmt = recording_format(src, FAST, warnings)
        assert (fmt.pix_fmt, fmt.full_range) == ("yuv420p", False)
        part = encode_part(src, tmp_path / "part.mp4", fmt, [], warnings).output
    finally:
        src.close()
    prepared, _ = IntroCache(tmp_path / "cache").get(intro, fmt)
    result = join_parts(tmp_path / "joined.mp4", prepared, [part], fmt)
    assert_limited(result.output, prepared.frames)
