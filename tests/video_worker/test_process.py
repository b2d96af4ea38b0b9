"""process_video against real generated media: timing, layout, audio rules, robustness, atomicity."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from services.video_worker.media.process import (
    EncodeSettings,
    LogoSpec,
    ProcessResult,
    RecordingUnreadable,
    process_video,
)
from shared.overlay import LogoError, load_logo_rgba
from tests.media import (
    INTRO_RGB,
    INTRO_TONE_HZ,
    RECORDING_TONE_HZ,
    audio_mono,
    frames_rgb,
    make_intro,
    make_logo_png,
    make_recording,
    png_bytes,
    probe,
)
from tests.video_worker.conftest import INTRO_S, REC_FPS, REC_S, REC_SIZE, Media

FAST = EncodeSettings(preset="ultrafast")
REC_FRAMES = round(REC_S * REC_FPS)
INTRO_OUT_FRAMES = round(INTRO_S * REC_FPS)  # the intro converted to the recording's rate


def run(raw: Path, out: Path, **kwargs: object) -> ProcessResult:
    kwargs.setdefault("encode", FAST)
    return process_video(raw, out, **kwargs)  # type: ignore[arg-type]


def near(rgb: np.ndarray, expected: tuple[int, int, int], tol: int = 30) -> bool:
    return bool(np.all(np.abs(rgb.astype(int) - np.array(expected)) <= tol))


def is_black(rgb: np.ndarray) -> bool:
    return bool(np.all(rgb.astype(int) <= 24))


def others(directory: Path, *keep: Path) -> list[str]:
    """Files in `directory` other than `keep`: temp files left behind would show up here."""
    return sorted(p.name for p in directory.iterdir() if p not in keep)


# ----------------------------------------------------------------------------------- timing


@pytest.mark.parametrize(("rec_fps", "intro_fps"), [(30, 25), (25, 30)])
def test_duration_frames_rate_and_size_follow_the_recording(tmp_path: Path, rec_fps: int, intro_fps: int) -> None:
    raw = make_recording(tmp_path / "raw.mp4", 2.0, size=(320, 240), fps=rec_fps)
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 180), fps=intro_fps, audio=False)
    out = tmp_path / "out.mp4"
    result = run(raw, out, intro=intro)
    info = probe(out)
    frame = 1 / rec_fps
    assert abs(result.intro_frames - rec_fps * 1.0) <= 1, result
    assert abs(result.recording_frames - rec_fps * 2.0) <= 1, result
    assert info["frames"] == result.frames == result.intro_frames + result.recording_frames
    assert abs(info["duration"] - 3.0) <= 2 * frame, info
    assert abs(info["fps"] - rec_fps) < 1e-6 and result.fps == rec_fps
    assert (info["width"], info["height"]) == (320, 240) == (result.width, result.height)
    assert info["pix_fmt"] == "yuv420p" and info["video_codec"] == "h264"
    assert not info["has_audio"] and not result.has_audio


def test_timestamps_are_constant_rate_and_dts_monotonic_across_the_join(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, intro=media.intro)
    dts: list[int] = []
    pts: list[int] = []
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        tb = stream.time_base
        for packet in c.demux(stream):
            if packet.size:
                dts.append(packet.dts)
                pts.append(packet.pts)
    assert len(pts) == result.frames
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), "DTS must increase strictly"
    steps = {round((b - a) * tb * REC_FPS, 6) for a, b in zip(sorted(pts), sorted(pts)[1:], strict=False)}
    assert steps == {1.0}, f"not constant frame rate: {steps}"


# ------------------------------------------------------------------------------------ intro


def test_intro_comes_first_pillarboxed_then_recording(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, intro=media.intro)
    assert abs(result.intro_frames - INTRO_OUT_FRAMES) <= 1
    last_intro, first_rec = result.intro_frames - 1, result.intro_frames
    frames = frames_rgb(out, [0, last_intro, first_rec, result.frames - 1])
    for i in (0, last_intro):  # 320x240 (4:3) into 640x360: 480x360 centred, 80 px black bars
        f = frames[i]
        assert is_black(f[180, 20]) and is_black(f[180, 619]), f"frame {i}: pillarbox bars missing"
        assert near(f[60, 120], INTRO_RGB) and near(f[300, 520], INTRO_RGB), f"frame {i}: intro colour"
    for i in (first_rec, result.frames - 1):
        f = frames[i]
        assert not is_black(f[180, 20]), f"frame {i}: recording should fill the frame"
        assert not near(f[60, 120], INTRO_RGB, 40), f"frame {i}: recording expected, intro found"


def test_wide_intro_is_letterboxed(tmp_path: Path, media: Media) -> None:
    raw = make_recording(tmp_path / "raw.mp4", 1.0, size=(320, 240), fps=30)
    intro = make_intro(tmp_path / "wide.mp4", 0.5, size=(640, 240), fps=30, audio=False)
    out = tmp_path / "out.mp4"
    result = run(raw, out, intro=intro)
    f = frames_rgb(out, [3])[3]  # 640x240 (8:3) into 320x240: 320x120 centred, 60 px bars
    assert result.intro_frames == 15
    assert is_black(f[20, 160]) and is_black(f[220, 160]), "letterbox bars missing"
    assert near(f[70, 20], INTRO_RGB) and near(f[170, 300], INTRO_RGB)


def test_unreadable_intro_is_skipped_with_a_warning(tmp_path: Path, media: Media) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(media.intro.read_bytes()[: media.intro.stat().st_size // 3])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for bad in (truncated, garbage):
        out = tmp_path / f"out-{bad.stem}.mp4"
        result = run(media.recording, out, intro=bad)
        assert out.exists() and result.intro_frames == 0
        assert probe(out)["frames"] == REC_FRAMES
        assert any(w.startswith("intro unreadable") for w in result.warnings), result.warnings
        assert not result.has_audio


def _damaged_intro(kind: str, tmp_path: Path, media: Media) -> Path:
    """A corpus of intros as they arrive broken from elsewhere (a Supabase dashboard upload skips the API's checks)."""
    bad = tmp_path / f"intro-{kind}.mp4"
    if kind == "zero_length":
        bad.write_bytes(b"")
    elif kind == "png_named_mp4":  # wrong container behind the extension
        bad.write_bytes(media.logo_red.read_bytes())
    elif kind == "bomb_named_mp4":
        _png_bomb(bad)
    elif kind == "audio_only":
        with av.open(str(bad), "w") as container:
            stream = container.add_stream("aac", rate=48000)
            stream.layout = "mono"
            for i in range(20):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, i * 1024
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    elif kind == "huge_dimensions":  # one 7680x4320 frame: decodable, but far beyond the camera's size
        with av.open(str(bad), "w") as container:
            stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 7680, 4320, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((4320, 7680, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    elif kind == "header_only":  # the container's start, no media data
        bad.write_bytes(media.intro.read_bytes()[:64])
    return bad


@pytest.mark.parametrize("kind", ["zero_length", "png_named_mp4", "bomb_named_mp4", "audio_only", "huge_dimensions",
                                  "header_only"])
def test_damaged_intro_costs_the_player_nothing(tmp_path: Path, media: Media, kind: str) -> None:
    """Whatever the intro, the recording comes out whole; an intro not used is said in a warning, never a crash."""
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, intro=_damaged_intro(kind, tmp_path, media))
    info = probe(out)
    assert info["frames"] == REC_FRAMES + result.intro_frames, (info, result)
    assert (info["width"], info["height"]) == REC_SIZE
    if result.intro_frames == 0:
        assert any(w.startswith("intro") for w in result.warnings), result.warnings
    assert not list(tmp_path.glob(".*tmp*")), "no temp file left"


# ------------------------------------------------------------------------------------ logos


def test_logo_at_corner_only_over_recording_and_border_transparent(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    spec = LogoSpec(media.logo_red, corner="top-right", width_fraction=0.2, margin_fraction=0.02)
    result = run(media.recording, out, intro=media.intro, logos=[spec])
    assert result.warnings == [] and result.logos_drawn == 1
    (x, y, w, h) = result.logo_boxes[0]
    width, height = REC_SIZE
    assert (w, h) == (128, 64), "0.2 of 640 px wide, aspect of the 64x32 PNG kept"
    assert abs(width - (x + w) - 0.02 * width) <= 2 and abs(y - 0.02 * width) <= 2, "top-right with margin"
    k = 40  # a recording frame
    out_frames = frames_rgb(out, [5, result.intro_frames + k])
    src = frames_rgb(media.recording, [k])[k]
    rec = out_frames[result.intro_frames + k]
    body = rec[y + 12 : y + h - 12, x + 12 : x + w - 12]  # border is 4 px of 64 -> 8 px at this scale
    assert near(body.mean(axis=(0, 1)), (255, 0, 0), 25), body.mean(axis=(0, 1))
    border = (slice(y, y + 4), slice(x, x + w))  # top strip of the transparent border
    diff = np.abs(rec[border].astype(int) - src[border].astype(int)).mean()
    assert diff < 6, f"transparent border changed the picture (mean diff {diff:.1f})"
    outside = np.abs(rec[:, : x - 8].astype(int) - src[:, : x - 8].astype(int)).mean()
    assert outside < 4, f"pixels away from the logo changed (mean diff {outside:.1f})"
    intro = out_frames[5][y : y + h, x : x + w]  # the intro's right pillarbox bar and blue picture
    assert not (np.abs(intro.astype(int) - (255, 0, 0)).sum(axis=2) < 120).any(), "logo drawn over the intro"
    assert is_black(intro[h // 2, w - 10]) and near(intro[h // 2, 10], INTRO_RGB)


def test_semi_transparent_logo_blends_and_does_not_smear_into_later_frames(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    spec = LogoSpec(media.logo_half, corner="bottom-left", width_fraction=0.25, margin_fraction=0.0)
    result = run(media.recording, out, logos=[spec])
    (x, y, w, h) = result.logo_boxes[0]
    assert (x, y + h) == (0, REC_SIZE[1])
    indices = [0, REC_FRAMES // 2, REC_FRAMES - 1]  # the last frames sit at the end of long P-frame chains
    got, src = frames_rgb(out, indices), frames_rgb(media.recording, indices)
    for i in indices:
        region = (slice(y + 4, y + h - 4), slice(x + 4, x + w - 4))
        expected = src[i][region].astype(float) * (1 - 128 / 255) + 255 * 128 / 255
        err = np.abs(got[i][region].astype(float) - expected).mean()
        assert err < 6, f"frame {i}: 50% white blend off by {err:.1f}"


def test_two_logos_in_one_corner_are_stacked_without_overlap(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    logos = [LogoSpec(media.logo_red, corner="top-right"), LogoSpec(media.logo_green, corner="top-right")]
    result = run(media.recording, out, logos=logos)
    assert result.logos_drawn == 2 and result.warnings == []
    (x1, y1, w1, h1), (x2, y2, w2, h2) = result.logo_boxes
    assert x2 + w2 <= x1 or x1 + w1 <= x2 or y2 + h2 <= y1 or y1 + h1 <= y2, result.logo_boxes
    f = frames_rgb(out, [10])[10]
    assert near(f[y1 + h1 // 2, x1 + w1 // 2], (255, 0, 0))
    assert near(f[y2 + h2 // 2, x2 + w2 // 2], (0, 255, 0))


def test_four_logos_fit_and_one_too_many_is_skipped(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    logos = [
        LogoSpec(media.logo_red, corner="top-left"),
        LogoSpec(media.logo_green, corner="top-right"),
        LogoSpec(media.logo_red, corner="bottom-left"),
        LogoSpec(media.logo_green, corner="bottom-right"),
        LogoSpec(media.logo_red, corner="bottom-right", width_fraction=0.9),
    ]
    result = run(media.recording, out, logos=logos)
    assert result.logos_drawn == 4 and out.exists()
    assert len(result.warnings) == 1 and "red.png" in result.warnings[0], result.warnings
    boxes = result.logo_boxes
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def _png_bomb(path: Path) -> Path:
    """Valid signature/IHDR/CRCs claiming 30000x30000, with a tiny IDAT: only the header is scary."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 6, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["not_png", "truncated", "bomb", "huge_file", "missing"])
def test_bad_logo_is_skipped_with_a_warning(tmp_path: Path, media: Media, kind: str) -> None:
    bad = tmp_path / f"{kind}.png"
    if kind == "not_png":
        bad.write_bytes(b"GIF89a this is not a png at all")
    elif kind == "truncated":
        data = png_bytes(np.full((200, 300, 4), 200, np.uint8))
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "bomb":
        _png_bomb(bad)
    elif kind == "huge_file":
        bad.write_bytes(png_bytes(np.zeros((8, 8, 4), np.uint8)) + b"\0" * (6 * 1024 * 1024))
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, logos=[LogoSpec(bad), LogoSpec(media.logo_red, corner="top-left")])
    assert out.exists() and result.recording_frames == REC_FRAMES
    assert result.logos_drawn == 1, "the good logo is still drawn"
    assert len(result.warnings) == 1 and bad.name in result.warnings[0], result.warnings
    if kind == "bomb":
        assert "30000x30000" in result.warnings[0]


def test_png_bomb_refused_from_header_without_decoding(tmp_path: Path) -> None:
    bomb = _png_bomb(tmp_path / "bomb.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LogoError, match="30000x30000"):
        load_logo_rgba(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_logo_alpha_is_read_from_png(tmp_path: Path) -> None:
    rgba = load_logo_rgba(make_logo_png(tmp_path / "l.png", size=(20, 10), rgba=(10, 20, 30, 77)))
    assert rgba.shape == (10, 20, 4)
    assert tuple(rgba[5, 10]) == (10, 20, 30, 77) and rgba[0, 0, 3] == 0


# ------------------------------------------------------------------------------------ audio


def _tone_stats(samples: np.ndarray, rate: int, start: float, end: float) -> tuple[float, float]:
    seg = samples[int(start * rate) : int(end * rate)]
    rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return rms, float(np.argmax(spectrum) * rate / len(seg))


def test_intro_audio_then_silence_to_the_end(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, intro=media.intro)
    info = probe(out)
    assert result.has_audio and info["has_audio"] and info["audio_codec"] == "aac"
    assert abs(info["audio_duration"] - result.duration_s) < 0.05, info
    samples, rate = audio_mono(out)
    rms, freq = _tone_stats(samples, rate, 0.2, INTRO_S - 0.2)
    assert rms > 0.2 and abs(freq - INTRO_TONE_HZ) < 5
    rms, _ = _tone_stats(samples, rate, INTRO_S + 0.2, result.duration_s - 0.1)
    assert rms < 0.005, "the recording part must be silent"


def test_recording_audio_follows_intro_audio(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording_audio, out, intro=media.intro)
    samples, rate = audio_mono(out)
    assert abs(len(samples) / rate - result.duration_s) < 0.05
    rms, freq = _tone_stats(samples, rate, 0.2, INTRO_S - 0.2)
    assert rms > 0.2 and abs(freq - INTRO_TONE_HZ) < 5
    rms, freq = _tone_stats(samples, rate, INTRO_S + 0.2, result.duration_s - 0.2)
    assert rms > 0.2 and abs(freq - RECORDING_TONE_HZ) < 5


def test_silence_in_place_of_missing_intro_audio(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording_audio, out, intro=media.intro_silent)
    samples, rate = audio_mono(out)
    rms, _ = _tone_stats(samples, rate, 0.1, INTRO_S - 0.2)
    assert rms < 0.005
    rms, freq = _tone_stats(samples, rate, INTRO_S + 0.2, result.duration_s - 0.2)
    assert rms > 0.2 and abs(freq - RECORDING_TONE_HZ) < 5


def test_no_audio_track_when_neither_part_has_audio(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, intro=media.intro_silent)
    assert not result.has_audio and not probe(out)["has_audio"]


# ------------------------------------------------------------------------ recording damage


@pytest.mark.parametrize("kind", ["random", "empty", "audio_only"])
def test_unreadable_recording_raises_and_leaves_nothing(tmp_path: Path, media: Media, kind: str) -> None:
    raw = tmp_path / "raw.mp4"
    if kind == "random":
        raw.write_bytes(np.random.default_rng(2).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        raw.write_bytes(b"")
    else:
        with av.open(str(media.intro)) as src, av.open(str(raw), "w", format="mp4") as dst:
            a = dst.add_stream_from_template(src.streams.audio[0])
            for packet in src.demux(src.streams.audio[0]):
                if packet.size == 0:
                    continue  # flush packets cannot be muxed
                packet.stream = a
                dst.mux(packet)
    out = tmp_path / "out.mp4"
    with pytest.raises(RecordingUnreadable):
        run(raw, out, intro=media.intro, logos=[LogoSpec(media.logo_red)])
    assert not out.exists()
    assert others(tmp_path, raw) == [], "no temp file may be left behind"


@pytest.mark.parametrize("frame_threads", [False, True], ids=["slice-threads", "frame-threads"])
def test_corrupt_packets_in_the_middle_still_produce_output(tmp_path: Path, frame_threads: bool) -> None:
    raw = make_recording(tmp_path / "raw.mp4", 4.0, size=(320, 240), fps=30)
    data = bytearray(raw.read_bytes())
    mdat = data.find(b"mdat")
    rng = np.random.default_rng(3)
    for frac in (0.35, 0.55):  # two damaged spots inside the media data
        at = mdat + int((len(data) - mdat) * frac)
        data[at : at + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    raw.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    result = run(raw, out, frame_threads=frame_threads)
    assert out.exists()
    info = probe(out)
    assert info["frames"] == result.frames >= 0.75 * 120, (result, info)


def test_timestamp_gap_is_filled_to_keep_constant_rate(tmp_path: Path) -> None:
    raw = tmp_path / "gap.mp4"
    with av.open(str(raw), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i, pts in enumerate([*range(30), *range(40, 70)]):  # 10 frames (1/3 s) missing
            frame = av.VideoFrame.from_ndarray(np.full((180, 160), 60 + i, np.uint8), format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 30)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    result = run(raw, out)
    assert result.recording_frames == 70 and result.duplicated_frames == 10, result
    assert probe(out)["frames"] == 70


def test_full_range_recording_looks_the_same_after_conversion_to_limited_range(tmp_path: Path, media: Media) -> None:
    raw = tmp_path / "full.mp4"
    with av.open(str(raw), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuvj420p"
        s.options = {"preset": "ultrafast"}
        for i in range(20):
            rgb = np.zeros((240, 320, 3), np.uint8)
            rgb[..., 1] = 128
            rgb[..., 2] = 40 + i
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    result = run(raw, out, logos=[LogoSpec(media.logo_red, corner="top-left", width_fraction=0.3)])
    x, y, w, h = result.logo_boxes[0]
    got, src = frames_rgb(out, [10])[10], frames_rgb(raw, [10])[10]
    assert near(got[y + h // 2, x + w // 2], (255, 0, 0), 30)
    assert np.abs(got[200:, 200:].astype(int) - src[200:, 200:].astype(int)).mean() < 4, "range changed"


# ------------------------------------------------------------------------- output contract


def _top_level_atoms(path: Path) -> list[str]:
    atoms: list[str] = []
    with path.open("rb") as fh:
        while header := fh.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0] - 8
            atoms.append(kind.decode("latin-1"))
            if size == 0:
                break
            fh.seek(size - 8, os.SEEK_CUR)
    return atoms


def test_ffprobe_accepts_output_and_moov_is_in_front(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording_audio, out, intro=media.intro, logos=[LogoSpec(media.logo_red)])
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration,format_name:stream=codec_name,pix_fmt,"
         "r_frame_rate,width,height", "-of", "json", str(out)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert proc.stderr == ""
    info = json.loads(proc.stdout)
    assert abs(float(info["format"]["duration"]) - result.duration_s) < 0.05
    assert "mp4" in info["format"]["format_name"]
    video = next(s for s in info["streams"] if s["codec_name"] == "h264")
    assert (video["width"], video["height"], video["pix_fmt"]) == (640, 360, "yuv420p")
    assert video["r_frame_rate"] == "30/1"
    assert any(s["codec_name"] == "aac" for s in info["streams"])
    atoms = _top_level_atoms(out)
    assert "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat"), atoms
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


def test_failure_leaves_existing_output_untouched_and_no_temp_file(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous video")
    seen: list[list[str]] = []

    def progress(percent: float, fps: float) -> None:
        seen.append(others(tmp_path, out))
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        run(media.recording, out, intro=media.intro, progress=progress)
    assert out.read_bytes() == b"previous video"
    assert others(tmp_path, out) == []
    assert seen and len(seen[0]) == 1 and seen[0][0].startswith(".out.mp4."), "encodes into a temp file beside it"


def test_progress_reports_and_ends_at_100(tmp_path: Path, media: Media) -> None:
    calls: list[tuple[float, float]] = []
    run(media.recording, tmp_path / "out.mp4", intro=media.intro, progress=lambda p, f: calls.append((p, f)))
    assert calls and calls[-1][0] == 100.0 and calls[-1][1] > 0
    percents = [p for p, _ in calls]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)


_RSS_CHILD = """
import resource, sys
from pathlib import Path
from services.video_worker.media.process import EncodeSettings, LogoSpec, process_video
process_video(Path(sys.argv[1]), Path(sys.argv[2]), intro=Path(sys.argv[3]), logos=[LogoSpec(Path(sys.argv[4]))],
              encode=EncodeSettings(preset="ultrafast", threads=1))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_recording_length(tmp_path: Path, media: Media) -> None:
    intro = media.intro  # has audio: exercises the audio timeline (silence after it) as well
    short = make_recording(tmp_path / "short.mp4", 1.0, size=(320, 240), fps=30)
    long = make_recording(tmp_path / "long.mp4", 30.0, size=(320, 240), fps=30)  # 900 frames = 100 MB raw
    peaks = []
    for raw in (short, long):
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(raw), str(tmp_path / f"{raw.stem}.out.mp4"), str(intro),
             str(media.logo_red)],
            capture_output=True, text=True, check=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        peaks.append(int(proc.stdout.split()[-1]))
    assert peaks[1] - peaks[0] < 20_000, f"peak RSS grew {peaks[1] - peaks[0]} KiB for 29 s more video"


def test_keyframes_follow_our_gop_not_the_sources(tmp_path: Path) -> None:
    """Decoded frames carry I/P/B types that libx264 would obey unless reset: keyframes every 10 here."""
    raw = tmp_path / "gop10.mp4"
    with av.open(str(raw), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.codec_context.gop_size = 10
        s.options = {"preset": "ultrafast", "sc_threshold": "0"}
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(np.full((180, 160), 60 + i, np.uint8), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    run(raw, out, encode=EncodeSettings(preset="ultrafast", gop_seconds=2.0))
    with av.open(str(raw)) as c:
        assert sum(p.is_keyframe for p in c.demux(video=0) if p.size) == 9
    with av.open(str(out)) as c:
        keyframes = [i for i, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]
    assert keyframes == [0, 60], keyframes


def test_unavailable_encoder_falls_back_to_libx264(tmp_path: Path, media: Media) -> None:
    out = tmp_path / "out.mp4"
    result = run(media.recording, out, encode=EncodeSettings(codec="no_such_encoder", preset="ultrafast"))
    assert probe(out)["frames"] == REC_FRAMES
    assert len(result.warnings) == 1 and "no_such_encoder" in result.warnings[0], result.warnings


def test_non_420_recording_is_converted_and_still_gets_logos(tmp_path: Path, media: Media) -> None:
    raw = tmp_path / "422.mp4"
    with av.open(str(raw), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv422p"
        s.options = {"preset": "ultrafast"}
        for i in range(25):
            rgb = np.full((240, 320, 3), (40, 120 + i, 90), np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv422p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    result = run(raw, out, logos=[LogoSpec(media.logo_red, corner="bottom-right", width_fraction=0.3)])
    info = probe(out)
    assert (info["pix_fmt"], info["frames"], info["fps"]) == ("yuv420p", 25, 25.0)
    x, y, w, h = result.logo_boxes[0]
    f = frames_rgb(out, [12])[12]
    assert near(f[y + h // 2, x + w // 2], (255, 0, 0)) and near(f[20, 20], (40, 132, 90), 12)


def test_encoder_bitrate_setting_reaches_the_encode_and_sets_the_size(tmp_path: Path, make_settings) -> None:
    """ENCODER_BITRATE replaces the CRF (and is what a hardware encoder gets): the file size follows it."""
    from services.video_worker.service import build
    from shared.bus import MqttBus
    from shared.store import LocalStore

    rec = make_recording(tmp_path / "rec.mp4", 3.0, size=(640, 360))
    sizes = {}
    for bitrate in (100_000, 400_000):
        settings = make_settings(encoder_bitrate=bitrate, encoder_preset="ultrafast",
                                 data_dir=tmp_path / f"data-{bitrate}")
        store = LocalStore(settings.data_dir)
        worker = build(settings, store, MqttBus(settings, "worker"))
        assert worker.ctx.encode.bitrate == bitrate
        out = process_video(rec, tmp_path / f"out-{bitrate}.mp4", encode=worker.ctx.encode)
        sizes[bitrate] = out.output.stat().st_size * 8 / out.duration_s
        worker.ctx.jobs.close()
        store.close()
    assert 0.5 * 100_000 < sizes[100_000] < 1.6 * 100_000, sizes
    assert sizes[400_000] > 2.5 * sizes[100_000], sizes
