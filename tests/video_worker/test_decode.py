"""MediaSource's decoding modes: frame-threaded decoding (the one-shot command's) loses or changes no frame."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av

from services.video_worker.media.decode import MediaSource
from services.video_worker.media.intro import prepare_intro
from shared.video_encode import EncodeSettings
from shared.video_format import derive_format
from tests.media import make_intro, make_recording


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


def test_intro_prepared_with_frame_threads_is_the_same_intro(tmp_path: Path) -> None:
    """The one-shot command prepares its intro with frame-threaded decoding: same frames, same parameter sets."""
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25, audio=True)
    raw = make_recording(tmp_path / "raw.mp4", 0.5, size=(640, 360), fps=30)
    src = MediaSource(raw)
    try:
        fmt, _ = derive_format(src.first, src.frame_rate(), EncodeSettings(preset="ultrafast"))
    finally:
        src.close()
    plain = prepare_intro(intro, fmt, tmp_path / "plain.mp4")
    threaded = prepare_intro(intro, fmt, tmp_path / "threaded.mp4", frame_threads=True)
    assert threaded.frames == plain.frames == 30
    assert threaded.extradata == plain.extradata
    assert threaded.intro_samples == plain.intro_samples
    assert decoded(threaded.path, frame_threads=False) == decoded(plain.path, frame_threads=False)
