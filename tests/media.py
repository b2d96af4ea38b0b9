"""Synthetic test media (PyAV + numpy + zlib only), so tests never depend on checked-in binaries.

The recording is a bright gradient with a moving white box (never black, so letterbox bars are
recognisable); the intro is a solid blue field with a white centre marker (never gradient-like, so
tests can tell intro frames from recording frames by colour alone).
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import zlib
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from shared import spliced_file

INTRO_RGB = (30, 60, 200)
"""Dominant colour of the intro (blue); the recording never contains a pixel close to it."""

INTRO_TONE_HZ = 440.0
RECORDING_TONE_HZ = 880.0


def _rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range conversion, the default the decoders assume for untagged SD/HD test files."""
    r, g, b = (c / 255.0 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return round(y), round(u), round(v)


def _add_tone(container: av.container.OutputContainer, rate: int, layout: str) -> av.audio.stream.AudioStream:
    stream = container.add_stream("aac", rate=rate)
    stream.layout = layout
    stream.bit_rate = 96_000
    return stream


def _encode_tone(
    container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float, hz: float
) -> None:
    rate = stream.codec_context.sample_rate
    channels = stream.codec_context.layout.nb_channels
    total = round(seconds * rate)
    frame_size = 1024
    for start in range(0, total, frame_size):
        n = min(frame_size, total - start)
        t = (np.arange(start, start + n, dtype=np.float64)) / rate
        mono = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        data = np.tile(mono, (channels, 1))
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=stream.codec_context.layout.name)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _open_video(path: Path, size: tuple[int, int], fps: int | Fraction) -> tuple[Any, Any]:
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"preset": "ultrafast", "crf": "18"}
    return container, stream


def make_recording(
    path: Path | str, seconds: float, size: tuple[int, int] = (640, 360), fps: int = 30, audio: bool = False
) -> Path:
    """H.264 yuv420p MP4: bright diagonal gradient plus a moving white box (and an 880 Hz tone)."""
    path = Path(path)
    w, h = size
    container, stream = _open_video(path, size, fps)
    astream = _add_tone(container, 44_100, "mono") if audio else None
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    y_plane = (70 + 100 * xs + 40 * ys).astype(np.uint8)
    u_plane = (90 + 70 * np.linspace(0, 1, w // 2, dtype=np.float32)[None, :] + 0 * ys[: h // 2]).astype(np.uint8)
    v_plane = (160 - 50 * np.linspace(0, 1, h // 2, dtype=np.float32)[:, None] + 0 * xs[:, : w // 2]).astype(np.uint8)
    box = max(8, h // 9) // 2 * 2
    frames = round(seconds * fps)
    for i in range(frames):
        yp = y_plane.copy()
        up = u_plane.copy()
        vp = v_plane.copy()
        x0 = (i * 6) % max(1, w - box) // 2 * 2
        y0 = (h - box) // 2 // 2 * 2
        yp[y0 : y0 + box, x0 : x0 + box] = 235
        up[y0 // 2 : (y0 + box) // 2, x0 // 2 : (x0 + box) // 2] = 128
        vp[y0 // 2 : (y0 + box) // 2, x0 // 2 : (x0 + box) // 2] = 128
        frame = av.VideoFrame.from_ndarray(
            np.concatenate([yp, up.reshape(h // 4, w), vp.reshape(h // 4, w)]), format="yuv420p"
        )
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if astream is not None:
        _encode_tone(container, astream, frames / fps, RECORDING_TONE_HZ)
    container.close()
    return path


def make_intro(
    path: Path | str, seconds: float, size: tuple[int, int] = (320, 240), fps: int = 25, audio: bool = True
) -> Path:
    """H.264 MP4 in solid INTRO_RGB with a white centre square, plus a 440 Hz AAC tone when audio=True."""
    path = Path(path)
    w, h = size
    container, stream = _open_video(path, size, fps)
    astream = _add_tone(container, 48_000, "stereo") if audio else None
    y, u, v = _rgb_to_yuv(INTRO_RGB)
    yp = np.full((h, w), y, np.uint8)
    up = np.full((h // 2, w // 2), u, np.uint8)
    vp = np.full((h // 2, w // 2), v, np.uint8)
    m = max(4, min(w, h) // 8) // 2 * 2
    cy, cx = h // 2 // 2 * 2, w // 2 // 2 * 2
    yp[cy - m : cy + m, cx - m : cx + m] = 235
    up[(cy - m) // 2 : (cy + m) // 2, (cx - m) // 2 : (cx + m) // 2] = 128
    vp[(cy - m) // 2 : (cy + m) // 2, (cx - m) // 2 : (cx + m) // 2] = 128
    data = np.concatenate([yp, up.reshape(h // 4, w), vp.reshape(h // 4, w)])
    frames = round(seconds * fps)
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if astream is not None:
        _encode_tone(container, astream, frames / fps, INTRO_TONE_HZ)
    container.close()
    return path


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (h, w, 4) uint8 array as a colour-type-6 PNG (filter 0 on every row)."""
    h, w, c = rgba.shape
    assert c == 4 and rgba.dtype == np.uint8

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def make_logo_png(
    path: Path | str,
    size: tuple[int, int] = (64, 32),
    rgba: tuple[int, int, int, int] = (255, 0, 0, 255),
    transparent_border: int = 4,
) -> Path:
    """RGBA PNG: a body of colour `rgba` inside a fully transparent border (alpha 0, colour green)."""
    path = Path(path)
    w, h = size
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 1] = 255  # transparent pixels carry a loud colour: leaking it would be visible
    b = transparent_border
    img[b : h - b, b : w - b] = rgba
    path.write_bytes(png_bytes(img))
    return path


@contextlib.contextmanager
def open_media(path: Path | str) -> Iterator[av.container.InputContainer]:
    """av.open for a finished video however it is kept: a file, or a splice (shared/spliced_file.py)."""
    if isinstance(path, Path) and spliced_file.is_splice(path):
        with spliced_file.open_read(path) as fh, av.open(fh) as c:
            yield c
    else:
        with av.open(str(path)) as c:
            yield c


def ffmpeg_errors(path: Path) -> str:
    """What the ffmpeg CLI says decoding every frame (empty: no error). A splice is piped to it (its index is in
    front, so nothing needs to seek), a file read as it is."""
    if spliced_file.is_splice(path):
        with spliced_file.open_read(path) as fh:
            data = fh.read()
        run = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "null", "-"], input=data,
                             capture_output=True, timeout=120)
    else:
        run = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                             capture_output=True, timeout=120)
    errors = run.stderr.decode(errors="replace").strip()
    return errors or ("" if run.returncode == 0 else f"ffmpeg exited {run.returncode}")


def probe(path: Path | str) -> dict[str, Any]:
    """Decode the whole file and report what a player would see."""
    with open_media(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        frames = 0
        pix_fmt = None
        first_pts: list[float] = []
        samples = 0
        rate = a.codec_context.sample_rate if a is not None else 0
        streams = [s for s in (v, a) if s is not None]
        for packet in c.demux(streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                    pix_fmt = pix_fmt or frame.format.name
                    if frame.time is not None and len(first_pts) < 1:
                        first_pts.append(frame.time)
                elif isinstance(frame, av.AudioFrame):
                    samples += frame.samples
        return {
            "frames": frames,
            "duration": (c.duration or 0) / 1_000_000,
            "video_duration": float(v.duration * v.time_base) if v is not None and v.duration else None,
            "fps": float(v.average_rate) if v is not None and v.average_rate else None,
            "width": v.codec_context.width if v is not None else None,
            "height": v.codec_context.height if v is not None else None,
            "pix_fmt": pix_fmt,
            "video_codec": v.codec_context.name if v is not None else None,
            "has_audio": a is not None,
            "audio_codec": a.codec_context.name if a is not None else None,
            "audio_duration": samples / rate if rate else 0.0,
            "sample_rate": rate,
        }


def frames_rgb(path: Path | str, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Decoded frames (rgb24, h x w x 3) at the given presentation-order indices."""
    wanted = set(indices)
    out: dict[int, np.ndarray] = {}
    with open_media(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    return out


def audio_mono(path: Path | str) -> tuple[np.ndarray, int]:
    """The first audio track as mono float32 samples, plus its sample rate."""
    chunks: list[np.ndarray] = []
    with open_media(path) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in c.decode(stream):
            arr = frame.to_ndarray()
            if arr.ndim == 2 and frame.format.is_planar:
                arr = arr.mean(axis=0)
            else:
                arr = arr.reshape(-1, frame.layout.nb_channels).mean(axis=1)
            chunks.append(arr.astype(np.float32))
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), rate


def colour_box(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), end exclusive, of the pixels within `tolerance` of `colour` (None: none)."""
    mask = np.abs(rgb.astype(int) - np.array(colour)).max(axis=2) <= tolerance
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def expected_logo_body(frame: tuple[int, int], corner: str, width_fraction: float, margin_fraction: float,
                       png: tuple[int, int] = (64, 32), border: int = 4) -> tuple[int, int, int, int]:
    """Where the opaque body of a make_logo_png logo lands, worked out by hand (even sizes, as the overlay
    keeps them): the logo is width_fraction of the frame's width, `margin` from its two nearest edges."""
    fw, fh = frame
    even = lambda v: int(round(v / 2)) * 2  # noqa: E731
    w = even(width_fraction * fw)
    h = even(w * png[1] / png[0])
    m = even(margin_fraction * fw)
    x = m if corner.endswith("left") else fw - m - w
    y = m if corner.startswith("top") else fh - m - h
    s = w / png[0]
    return (round(x + border * s), round(y + border * s), round(x + (png[0] - border) * s),
            round(y + (png[1] - border) * s))


def assert_box_near(got: tuple[int, int, int, int] | None, want: tuple[int, int, int, int], tolerance: int = 3) -> None:
    assert got is not None, f"nothing of that colour; expected at {want}"
    assert all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True)), f"at {got}, expected {want}"
