"""MediaSource's decoding modes: frame-threaded decoding (the one-shot command's) loses or changes no frame."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av

from services.video_worker.source import MediaSource
from tests.media import make_recording


def decoded(path: Path, *, frame_threads: bool) -> list[tuple[int | None, str]]:
    """(pts, digest of the pixels) of every video frame, in decoding order."""
    src = MediaSource(path, frame_threads=frame_threads)
    try:
        return [(f.pts, hashlib.sha256(b"".join(bytes(p) for p in f.planes)).hexdigest())
                for f in src.frames if isinstance(f, av.VideoFrame)]
    finally:
        src.close()


def test_frame_threads_decode_every_frame_identically_to_slice_threads(tmp_path: Path) -> None:
    raw = make_recording(tmp_path / "raw.mp4", 2.0, size=(320, 240), fps=30)
    slice_only = decoded(raw, frame_threads=False)
    threaded = decoded(raw, frame_threads=True)
    assert len(slice_only) == 60, "the recording's every frame, the flushed tail included"
    assert threaded == slice_only


def test_frame_threads_only_when_asked(tmp_path: Path) -> None:
    """The service decodes with slice threads only (a Pi's memory); frame threads are the one-shot's opt-in."""
    raw = make_recording(tmp_path / "raw.mp4", 0.5, size=(160, 120), fps=30)
    for asked, expected in ((False, "SLICE"), (True, "AUTO")):
        src = MediaSource(raw, frame_threads=asked)
        try:
            assert src.video.codec_context.thread_type.name == expected
        finally:
            src.close()
