"""The one H.264 encoder set-up shared by the recorder (capture) and the worker (intros, fallback transcode).

Both sides open their encoder here, so a recording and an intro prepared for it get byte-identical
parameter sets and join by packet copy.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction

import av

SOFTWARE_X26X = ("libx264", "libx265")


@dataclass(frozen=True)
class EncodeSettings:
    """How the single encode pass runs.

    h264_v4l2m2m (Pi 4 hardware) ignores preset/crf and gets `bitrate` or a size-based default.
    """

    codec: str = "libx264"
    preset: str = "veryfast"
    crf: int | None = 23
    bitrate: int | None = None  # bits/s; when set, a VBV-capped target instead of crf
    maxrate: int | None = None  # bits/s; caps a crf encode (VBV), so a busy scene cannot blow the upload size
    threads: int = 0  # 0 = one per CPU (x264's own default, 1.5 per CPU, costs ~10 MB a thread at 1080p for no gain)
    gop_seconds: float = 2.0
    audio_bitrate: int = 128_000


def default_bitrate(width: int, height: int, rate: Fraction) -> int:
    """~0.1 bit per pixel: a sane target for encoders that cannot do constant quality."""
    return max(500_000, int(width * height * float(rate) * 0.1))


def encoder_problem(settings: EncodeSettings, width: int, height: int, rate: Fraction, pix_fmt: str) -> str | None:
    """Why `settings.codec` cannot encode this video (None if it can), found before any output exists.

    Hardware encoders can be absent (not a Pi), lack their device or be busy; finding out at the
    first frame would waste the job, so a throwaway context is opened first.
    """
    if settings.codec in SOFTWARE_X26X:
        return None  # built into PyAV's wheels; opening one costs a lookahead allocation for nothing
    try:
        ctx = av.CodecContext.create(settings.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
        ctx.time_base = Fraction(rate.denominator, rate.numerator)
        ctx.framerate = rate
        ctx.bit_rate = settings.bitrate or default_bitrate(width, height, rate)
        ctx.open()
        del ctx  # freed now (CPython refcounting), so a single-instance device is released again
    except Exception as exc:  # any failure means "use the software encoder instead"
        return f"{type(exc).__name__}: {exc}"
    return None


def add_video_stream(
    container: av.container.OutputContainer,
    settings: EncodeSettings,
    width: int,
    height: int,
    rate: Fraction,
    pix_fmt: str,
    color: dict[str, int],
) -> av.video.stream.VideoStream:
    """Configure the encoder once: constant frame rate in a 1/fps time base, fixed GOP, colour tags kept."""
    stream = container.add_stream(settings.codec, rate=rate)
    cc = stream.codec_context
    stream.width = width
    stream.height = height
    stream.pix_fmt = pix_fmt
    cc.time_base = Fraction(rate.denominator, rate.numerator)
    cc.framerate = rate
    cc.gop_size = max(1, round(settings.gop_seconds * float(rate)))
    cc.thread_count = settings.threads or (os.cpu_count() or 1 if settings.codec in SOFTWARE_X26X else 0)
    if settings.codec in SOFTWARE_X26X:
        # PyAV defaults encoders to slice threads; x264's frame threads give ~15 % more throughput
        # and no per-frame slices (smaller files), at the cost of latency we do not care about.
        cc.thread_type = "FRAME"
    for name, value in color.items():
        with contextlib.suppress(AttributeError, ValueError, TypeError):  # tags are cosmetic
            setattr(cc, name, value)
    options: dict[str, str] = {}
    if settings.codec in SOFTWARE_X26X:
        options["preset"] = settings.preset
        if settings.bitrate:
            stream.bit_rate = settings.bitrate
            options["maxrate"] = str(settings.bitrate)
            options["bufsize"] = str(2 * settings.bitrate)
        elif settings.crf is not None:
            options["crf"] = str(settings.crf)
            if settings.maxrate:
                options["maxrate"] = str(settings.maxrate)
                options["bufsize"] = str(2 * settings.maxrate)
    else:
        stream.bit_rate = settings.bitrate or default_bitrate(width, height, rate)
    stream.options = options
    return stream
