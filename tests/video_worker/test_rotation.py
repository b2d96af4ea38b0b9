"""CAMERA_ROTATION survives every way a finished video is made, and the intro and logos come out upright.

Both kinds of recorder source are made by the recorder's own code: a decoded camera turned in pixels
(services/recorder/rotate.py's RotatedCamera, then the SegmentWriter's encoder) and a remuxed camera
(FileCamera's stream, its packets copied, the turn carried as a display matrix). Each is made into a
finished video three ways: per-segment parts joined by copy, the whole recording transcoded, and
`ezrec process`. What a player shows (the stored frames turned by the file's display matrix) must be
the camera's picture turned by CAMERA_ROTATION, with the intro upright and the logo in its corner.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from services.cli import main
from services.recorder.camera import CapturedFrame, CapturedPacket
from services.recorder.pyav_cameras import FileCamera
from services.recorder.rotate import rotated
from services.recorder.writer import EncodeSpec, SegmentWriter
from services.video_worker.media.decode import MediaSource
from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.process import (
    EncodeSettings,
    LogoSpec,
    encode_part,
    prepared_logos,
    process_video,
    recording_format,
)
from services.video_worker.media.remux_join import JoinMismatch, join_parts
from shared.recordings.segments import join_segments
from shared.video_format import OutputFormat
from tests.media import make_logo_png

FAST = EncodeSettings(preset="ultrafast")
FPS = 15
SEG_FRAMES = 15
SIZE = (320, 240)  # the camera's picture, as its sensor sees it
START = datetime(2026, 3, 1, 18, 0, 0, tzinfo=UTC)
GREY, GREEN, RED = (128, 128, 128), (40, 200, 60), (255, 0, 0)
YELLOW, BLUE = (240, 230, 40), (30, 60, 200)
INTRO_SIZE = (320, 180)
LOGO_WIDTH, LOGO_MARGIN = 0.15, 0.02


def camera_picture() -> np.ndarray:
    """Grey with a green block near the top-left: any turn or mirror moves the block."""
    w, h = SIZE
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = GREY
    rgb[16:96, 16:120] = GREEN
    return rgb


def intro_picture() -> np.ndarray:
    """Landscape, yellow over blue: upright only one way."""
    w, h = INTRO_SIZE
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[: h // 2] = YELLOW
    rgb[h // 2:] = BLUE
    return rgb


def encode_file(path: Path, picture: np.ndarray, frames: int, fps: int, rotation: int = 0) -> Path:
    """`picture` as stored pixels; `rotation`: a display matrix turning them clockwise (as a phone writes)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = picture.shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "18", "g": str(SEG_FRAMES), "bf": "0"}
        if rotation:
            s.set_display_rotation((-rotation) % 360)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def at(n: int) -> datetime:
    return START + timedelta(seconds=n / FPS)


class PictureCamera:
    """A decoded camera (as lavfi/V4L2 are) yielding the camera picture without real-time pacing."""

    encoded = None

    def __init__(self, frames: int) -> None:
        self.width, self.height, self.fps = SIZE[0], SIZE[1], FPS
        self.count = frames

    def frames(self) -> Iterator[CapturedFrame]:
        picture = camera_picture()
        for n in range(self.count):
            yield CapturedFrame(av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p"), at(n))

    def close(self) -> None:
        pass


def decoded_segments(directory: Path, degrees: int) -> list[Path]:
    """The recorder's decoded path: RotatedCamera turns pixels, SegmentWriter encodes them."""
    camera = rotated(PictureCamera(2 * SEG_FRAMES), degrees)
    assert camera.encoded is None
    paths, writer = [], None
    for n, item in enumerate(camera.frames()):
        if n % SEG_FRAMES == 0:
            if writer is not None:
                writer.close()
            paths.append(directory / f"seg-{len(paths):05d}.mp4")
            writer = SegmentWriter(paths[-1], START, encode=EncodeSpec(camera.width, camera.height, FPS))
        assert writer is not None and writer.write(item)
    assert writer is not None
    writer.close()
    return paths


def remuxed_segments(directory: Path, degrees: int) -> list[Path]:
    """The recorder's remux path: a file camera's packets copied, CAMERA_ROTATION as the display matrix."""
    source = encode_file(directory / "camera.mp4", camera_picture(), 2 * SEG_FRAMES, FPS)
    camera = rotated(FileCamera(source), degrees)
    try:
        assert camera.encoded is not None and camera.encoded.display_rotation == degrees
        paths, writer = [], None
        with av.open(str(source)) as c:
            for n, packet in enumerate(p for p in c.demux(video=0) if p.size):
                if n % SEG_FRAMES == 0:
                    if writer is not None:
                        writer.close()
                    paths.append(directory / f"seg-{len(paths):05d}.mp4")
                    writer = SegmentWriter(paths[-1], START, copy=camera.encoded)
                assert writer is not None and writer.write(CapturedPacket(packet, at(n), packet.is_keyframe))
        assert writer is not None
        writer.close()
    finally:
        camera.close()
    return paths


KINDS = {"decoded": decoded_segments, "remuxed": remuxed_segments}


@pytest.fixture(scope="module")
def shared_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("rotation-media")
    intro = encode_file(d / "intro.mp4", intro_picture(), FPS, FPS)
    logo = make_logo_png(d / "red.png", size=(64, 32), rgba=(*RED, 255))
    return intro, logo


# ------------------------------------------------------------------------------------ what a player shows


def ffprobe_rotation(path: Path) -> int:
    """Clockwise degrees ffprobe's display matrix turns the video by (0 without one)."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream_side_data=rotation", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True, timeout=30)
    streams = json.loads(proc.stdout).get("streams", [])
    side = [d for s in streams for d in s.get("side_data_list", []) if "rotation" in d]
    return (-int(side[0]["rotation"])) % 360 if side else 0


def shown_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """RGB of the chosen frames as a player shows them: turned by each frame's display matrix."""
    out = {}
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in indices:
                clockwise = (-frame.rotation) % 360
                out[i] = np.rot90(frame.to_ndarray(format="rgb24"), -clockwise // 90)
    return out


def near(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.abs(rgb.reshape(-1, 3).mean(axis=0) - colour).max() < tol)


def logo_box(shown_w: int) -> tuple[int, int, int, int]:
    """Where the default top-right logo lies in the shown picture (shared/overlay.py's layout)."""
    w = round(LOGO_WIDTH * shown_w / 2) * 2
    margin = round(LOGO_MARGIN * shown_w / 2) * 2
    return shown_w - margin - w, margin, w, round(w * 32 / 64 / 2) * 2


def assert_upright(video: Path, degrees: int, intro_frames: int, matrix: int) -> None:
    """`matrix`: the display matrix expected (a decoded camera was turned in pixels, a remuxed one was not)."""
    assert ffprobe_rotation(video) == matrix, "the recording's display matrix is kept"
    frames = shown_frames(video, [2, intro_frames + 5])
    intro, recording = frames[2], frames[intro_frames + 5]
    expected = np.rot90(camera_picture(), -degrees // 90)
    assert recording.shape == expected.shape, f"shown {recording.shape[1::-1]}, camera turned {degrees}"
    x, y, w, h = logo_box(recording.shape[1])
    assert near(recording[y + 4:y + h - 4, x + 4:x + w - 4], RED), "the logo is in the shown top-right corner"
    outside = np.ones(recording.shape[:2], bool)
    outside[max(0, y - 4):y + h + 4, max(0, x - 4):x + w + 4] = False
    diff = np.abs(recording.astype(int) - expected.astype(int))[outside]
    assert diff.mean() < 6, f"shown as the camera saw it, turned {degrees} (mean diff {diff.mean():.1f})"
    # The intro is letterboxed or pillarboxed into the shown size: yellow must be above blue.
    sh, sw = intro.shape[:2]
    scale = min(sw / INTRO_SIZE[0], sh / INTRO_SIZE[1])
    band = INTRO_SIZE[1] * scale
    top, bottom = round(sh / 2 - band / 4), round(sh / 2 + band / 4)
    assert near(intro[top - 2:top + 2, sw // 2 - 4:sw // 2 + 4], YELLOW), "intro upright: yellow on top"
    assert near(intro[bottom - 2:bottom + 2, sw // 2 - 4:sw // 2 + 4], BLUE), "intro upright: blue below"


# ------------------------------------------------------------------------------------------------ paths


def parts_and_join(segments: list[Path], out_dir: Path, intro: Path, logo: Path) -> tuple[Path, int]:
    """The worker's fast path: each segment encoded into a part, then intro + parts joined by copy."""
    fmt: OutputFormat | None = None
    parts = []
    for i, seg in enumerate(segments):
        src = MediaSource(seg)
        try:
            warnings: list[str] = []
            fmt = fmt or recording_format(src, FAST, warnings)
            logos = prepared_logos([LogoSpec(logo, corner="top-right")], fmt, warnings)
            parts.append(encode_part(src, out_dir / f"part-{i}.mp4", fmt, logos, warnings).output)
            assert warnings == []
        finally:
            src.close()
    assert fmt is not None
    prepared, _ = IntroCache(out_dir / "cache").get(intro, fmt)
    result = join_parts(out_dir / "joined.mp4", prepared, parts, fmt)
    return result.output, prepared.frames


@pytest.mark.parametrize("degrees", [90, 180, 270])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_rotation_survives_parts_whole_and_ezrec_process(tmp_path: Path, shared_media, kind: str,
                                                         degrees: int, capsys) -> None:
    intro, logo = shared_media
    segments = KINDS[kind](tmp_path, degrees)
    stored = SIZE if kind == "remuxed" else (SIZE[1], SIZE[0]) if degrees % 180 else SIZE
    with av.open(str(segments[0])) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == stored

    matrix = degrees if kind == "remuxed" else 0
    joined, intro_frames = parts_and_join(segments, tmp_path, intro, logo)
    assert_upright(joined, degrees, intro_frames, matrix)

    raw = join_segments(segments, tmp_path / "raw.mp4", START).path
    assert ffprobe_rotation(raw) == matrix, "the raw recording as the recorder made it"
    whole = process_video(raw, tmp_path / "whole.mp4", intro=intro, logos=[LogoSpec(logo, corner="top-right")],
                          encode=FAST)
    assert whole.warnings == []
    assert_upright(whole.output, degrees, whole.intro_frames, matrix)

    cli_out = tmp_path / "cli.mp4"
    assert main(["process", str(raw), "-o", str(cli_out), "--intro", str(intro), "--logo", str(logo),
                 "--preset", "ultrafast"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert_upright(cli_out, degrees, report["intro_frames"], matrix)


@pytest.mark.parametrize("degrees", [0, 90])
def test_an_intro_with_its_own_display_matrix_is_shown_upright(tmp_path: Path, shared_media, degrees: int) -> None:
    """A phone-made intro (pixels stored sideways, a matrix to turn them) is upright in any recording's video."""
    _, logo = shared_media
    phone = encode_file(tmp_path / "phone.mp4", np.ascontiguousarray(np.rot90(intro_picture(), 1)), FPS, FPS,
                        rotation=90)
    raw = join_segments(remuxed_segments(tmp_path, degrees) if degrees else decoded_segments(tmp_path, 0),
                        tmp_path / "raw.mp4", START).path
    result = process_video(raw, tmp_path / "out.mp4", intro=phone, logos=[LogoSpec(logo, corner="top-right")],
                           encode=FAST)
    assert_upright(result.output, degrees, result.intro_frames, matrix=degrees)


def test_recorder_segments_joined_by_copy_keep_their_display_matrix(tmp_path: Path) -> None:
    """A remuxed camera's segments joined as they are (no intro): the output carries their matrix."""
    segments = remuxed_segments(tmp_path, 90)
    src = MediaSource(segments[0])
    try:
        fmt = recording_format(src, FAST, [])
    finally:
        src.close()
    assert fmt.rotation == 90
    result = join_parts(tmp_path / "copy.mp4", None, segments[:1], fmt)
    assert ffprobe_rotation(result.output) == 90
    shown = shown_frames(result.output, [3])[3]
    assert np.abs(shown.astype(int) - np.rot90(camera_picture(), -1).astype(int)).mean() < 6


def test_a_piece_turned_otherwise_is_not_joined_by_copy(tmp_path: Path) -> None:
    """Copying a piece under another piece's matrix would show it sideways: refused (the worker transcodes)."""
    turned = remuxed_segments(tmp_path, 90)
    src = MediaSource(turned[0])
    try:
        fmt = recording_format(src, FAST, [])
    finally:
        src.close()
    with pytest.raises(JoinMismatch, match="rotation"):
        join_parts(tmp_path / "mixed.mp4", None, turned[:1], OutputFormat.from_json(fmt.to_json().replace(
            '"rotation": 90', '"rotation": 0')))
    assert not (tmp_path / "mixed.mp4").exists()


def test_unrotated_format_keys_are_unchanged_by_the_rotation_field() -> None:
    """Cached intros and stored plans of unrotated videos keep their keys; a rotated format gets its own."""
    fmt = OutputFormat(width=320, height=240, rate=Fraction(15), pix_fmt="yuv420p", full_range=False, bt709=False,
                       colour=(("color_range", 1),), encode=FAST)
    assert "rotation" not in fmt.to_json()
    assert OutputFormat.from_json(fmt.to_json()) == fmt
    turned = OutputFormat.from_json(fmt.to_json()[:-1] + ', "rotation": 270}')
    assert turned.rotation == 270 and turned.key != fmt.key and turned.display_size == (240, 320)


def test_the_thumbnail_of_a_turned_video_is_upright(tmp_path: Path) -> None:
    """The dashboard's thumbnail is what a player shows: turned by the video's display matrix."""
    import io

    from shared.thumbnails import encode_jpeg

    segments = remuxed_segments(tmp_path, 90)
    with av.open(str(segments[0])) as c:
        frame = next(c.decode(video=0))
    with av.open(io.BytesIO(encode_jpeg(frame, width=120))) as jpeg:
        shown = next(jpeg.decode(video=0)).to_ndarray(format="rgb24")
    expected = np.rot90(camera_picture(), -1)[::2, ::2]
    assert shown.shape == expected.shape, "portrait, as shown"
    assert np.abs(shown.astype(int) - expected.astype(int)).mean() < 12
