"""The output format of one finished video, decided once from the recording's first frame.

Every piece of a video (the prepared intro, each processed segment, the whole-file encode) is encoded
with exactly this format, so the pieces share one set of H.264 parameters and join by packet copy.
Its `key` names cached intros and tells whether two pieces can be joined.

Two decisions make every output display the same in every player:
- Colour range: full-range sources (yuvj420p, or yuv420p tagged "pc") are converted to limited-range
  yuv420p (`to_limited_range`), so outputs are always tagged and encoded as tv range.
- Rotation: `rotation` is the clockwise turn a player applies (the source's display matrix, e.g. a
  sideways IP camera's); width and height are the coded (stored) size. Every piece carries the same
  display matrix and pixels stay as stored; only what is drawn (intro, logos) is turned to match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import ColorRange

from shared.video_encode import EncodeSettings, add_video_stream, encoder_problem

FALLBACK_CODEC = "libx264"
AVCOL_RANGE_JPEG = 2
AVCOL_SPC_BT709 = 1
AVCOL_SPC_SMPTE170M = 6  # also AVCOL_PRI_SMPTE170M and AVCOL_TRC_SMPTE170M
UNSPECIFIED_TAGS = (0, 2)  # 0 = RGB/reserved, 2 = unspecified: nothing worth copying


@dataclass(frozen=True)
class OutputFormat:
    width: int
    height: int
    rate: Fraction
    pix_fmt: str
    full_range: bool
    bt709: bool
    colour: tuple[tuple[str, int], ...]
    encode: EncodeSettings
    rotation: int = 0
    """Clockwise degrees a player turns the stored frames by (0, 90, 180, 270): the display matrix."""

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown: what intros and logos are laid out in."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def time_base(self) -> Fraction:
        return Fraction(self.rate.denominator, self.rate.numerator)

    @property
    def colour_tags(self) -> dict[str, int]:
        return dict(self.colour)

    def to_json(self) -> str:
        data = asdict(self)
        data["rate"] = f"{self.rate.numerator}/{self.rate.denominator}"
        data["colour"] = [list(c) for c in self.colour]
        if not self.rotation:
            del data["rotation"]  # unrotated formats keep the keys they had before rotation was carried
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OutputFormat:
        data: dict[str, Any] = json.loads(text)
        data["rate"] = Fraction(data["rate"])
        data["colour"] = tuple((str(k), int(v)) for k, v in data["colour"])
        data["encode"] = EncodeSettings(**data["encode"])
        return cls(**data)

    @property
    def key(self) -> str:
        """Everything that shapes the bitstream (threads excepted: they do not change the parameter sets)."""
        return hashlib.sha256(replace(self, encode=replace(self.encode, threads=0)).to_json().encode()).hexdigest()[
            :16
        ]


def working_format(first: av.VideoFrame, codec: str) -> tuple[str, bool]:
    """Pixel format frames are blended and encoded in: always limited-range yuv420p.

    A full-range output (yuvj420p, or yuv420p tagged pc) is shown with crushed or washed-out levels by
    players that ignore the tag, so full-range sources are converted (`to_limited_range`) instead.
    """
    return "yuv420p", False


def is_full_range(frame: av.VideoFrame) -> bool:
    return frame.format.name.startswith("yuvj") or frame.color_range == AVCOL_RANGE_JPEG


def to_limited_range(frame: av.VideoFrame, width: int, height: int, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """`frame` as limited-range `pix_fmt` at width x height (a new frame; one swscale pass)."""
    return frame.reformat(width=width, height=height, format=pix_fmt, dst_color_range=ColorRange.MPEG)


def display_rotation(frame: av.VideoFrame) -> int:
    """Clockwise degrees the frame's display matrix turns it by, to the nearest quarter turn (PyAV: ccw)."""
    try:
        ccw = int(frame.rotation or 0)
    except (TypeError, ValueError):
        return 0
    return (-round(ccw / 90) * 90) % 360


def colour_tags(first: av.VideoFrame, full_range: bool, bt709: bool) -> tuple[tuple[str, int], ...]:
    """The output's colour description: the source's, with what it leaves unsaid filled in as assumed.

    The range is only written into the H.264 stream (and the MP4 colr box) with a colour description,
    so an untagged source gets the matrix the logos were blended in (`bt709`) and its usual primaries
    and transfer: BT.709 (1), else SMPTE 170M (6), what players assume for untagged HD and SD video.
    """
    assumed = AVCOL_SPC_BT709 if bt709 else AVCOL_SPC_SMPTE170M
    tags = [("color_range", AVCOL_RANGE_JPEG if full_range else 1)]
    for name in ("colorspace", "color_primaries", "color_trc"):
        value = getattr(first, name, 2)
        tags.append((name, int(value) if value not in UNSPECIFIED_TAGS else assumed))
    return tuple(tags)


def derive_format(first: av.VideoFrame, rate: Fraction, settings: EncodeSettings) -> tuple[OutputFormat, str | None]:
    """The format for a recording whose first decoded frame is `first`; plus a warning if the encoder fell back."""
    width, height = first.width & ~1, first.height & ~1
    warning = None
    pix_fmt, full_range = working_format(first, settings.codec)
    problem = encoder_problem(settings, width, height, rate, pix_fmt)
    if problem is not None:
        warning = f"encoder {settings.codec} unusable ({problem}); used {FALLBACK_CODEC}"
        settings = replace(settings, codec=FALLBACK_CODEC)
        pix_fmt, full_range = working_format(first, settings.codec)
    bt709 = first.colorspace == AVCOL_SPC_BT709 or (first.colorspace in UNSPECIFIED_TAGS and height >= 720)
    fmt = OutputFormat(width=width, height=height, rate=Fraction(rate), pix_fmt=pix_fmt, full_range=full_range,
                       bt709=bt709, colour=colour_tags(first, full_range, bt709), encode=settings,
                       rotation=display_rotation(first))
    return fmt, warning


def add_format_stream(container: av.container.OutputContainer, fmt: OutputFormat) -> av.video.stream.VideoStream:
    """The encoder for `fmt`: the one place its fields become encoder options (and the display matrix)."""
    stream = add_video_stream(container, fmt.encode, fmt.width, fmt.height, fmt.rate, fmt.pix_fmt, fmt.colour_tags)
    carry_rotation(stream, fmt.rotation)
    return stream


def carry_rotation(stream: av.video.stream.VideoStream, rotation: int) -> None:
    """Write `rotation` (clockwise) as `stream`'s display matrix; 0 clears one copied from a template."""
    stream.set_display_rotation((-rotation) % 360)
