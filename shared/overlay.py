"""Logo overlays: safe PNG loading, non-overlapping layout and a yuv420p blend of the logo region only.

Why not convert frames to RGB and alpha-blend there: a full-frame RGB round trip halves throughput.
Instead each logo is converted once into premultiplied Y/U/V planes plus integer blend weights
(full-resolution alpha for Y, 2x2-averaged alpha for U/V) and every frame only touches the
few thousand bytes under the logo, in place, with numpy.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import av
import numpy as np

log = logging.getLogger(__name__)

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CORNERS: tuple[Corner, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")

MAX_LOGO_BYTES = 5 * 1024 * 1024
"""Real logos are a few hundred KB; anything bigger is a mistake or an attack."""
MAX_LOGO_SIDE = 4096
"""Checked from IHDR before decoding: a 30000x30000 header would otherwise allocate 3.6 GB."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class LogoError(Exception):
    """A logo file cannot be used; the job carries on without it."""


@dataclass(frozen=True)
class LogoSpec:
    """Where and how big one logo is drawn; sizes are fractions of the video width so they scale."""

    path: Path
    corner: Corner = "top-right"
    width_fraction: float = 0.15
    margin_fraction: float = 0.02


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def overlaps(self, other: Rect) -> bool:
        return not (
            self.x + self.w <= other.x
            or other.x + other.w <= self.x
            or self.y + self.h <= other.y
            or other.y + other.h <= self.y
        )


@dataclass(frozen=True)
class PreparedLogo:
    """A logo ready to blend: per-plane integer weights for out = (bg * inv + pre + 128) >> 8.

    `inv` = 256 * (1 - alpha) and `pre` = 256 * alpha * value (premultiplied), both cropped to the
    non-transparent bounding box, so fully transparent margins cost nothing and stay bit-exact.
    """

    name: str
    rect: Rect  # the whole laid-out box (luma coordinates), used for layout and tests
    x: int  # top-left of the cropped blend region, even
    y: int
    inv_y: np.ndarray
    pre_y: np.ndarray
    inv_c: np.ndarray
    pre_u: np.ndarray
    pre_v: np.ndarray
    scratch_y: np.ndarray
    scratch_c: np.ndarray


# --------------------------------------------------------------------------------------------- PNG


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Walk every chunk, verifying lengths and CRCs, so a truncated file is refused before decoding."""
    if not data.startswith(_PNG_SIGNATURE):
        raise LogoError("not a PNG file")
    pos = len(_PNG_SIGNATURE)
    out: list[tuple[bytes, bytes]] = []
    while True:
        if pos + 12 > len(data):
            raise LogoError("truncated PNG (chunk header past end of file)")
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if length > 0x7FFFFFFF or end + 4 > len(data):
            raise LogoError(f"truncated PNG (chunk {kind!r} past end of file)")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(kind + body) != crc:
            raise LogoError(f"corrupt PNG (bad CRC in chunk {kind!r})")
        out.append((kind, body))
        pos = end + 4
        if kind == b"IEND":
            return out


def png_dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from IHDR (must be the first chunk), without decoding anything."""
    if not data.startswith(_PNG_SIGNATURE):
        raise LogoError("not a PNG file")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise LogoError("PNG without IHDR header")
    w, h = struct.unpack_from(">II", data, 16)
    return w, h


def load_logo_rgba(path: Path) -> np.ndarray:
    """Read a PNG as an (h, w, 4) uint8 RGBA array, refusing oversized or malformed files first.

    Decoding goes through PyAV (the png decoder keeps alpha); VideoFrame.from_image would not.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LogoError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if size > MAX_LOGO_BYTES:
        raise LogoError(f"file too large ({size} bytes > {MAX_LOGO_BYTES})")
    data = path.read_bytes()
    w, h = png_dimensions(data)
    if not (0 < w <= MAX_LOGO_SIDE and 0 < h <= MAX_LOGO_SIDE):
        raise LogoError(f"PNG dimensions {w}x{h} outside 1..{MAX_LOGO_SIDE}")
    chunks = _chunks(data)
    if not any(kind == b"IDAT" for kind, _ in chunks):
        raise LogoError("PNG without image data")
    try:
        with av.open(io.BytesIO(data), format="png_pipe") as container:
            frame = next(container.decode(video=0))
            rgba = frame.to_ndarray(format="rgba")
    except (av.FFmpegError, StopIteration, ValueError) as exc:
        raise LogoError(f"PNG does not decode: {exc}") from exc
    if rgba.shape != (h, w, 4):
        raise LogoError(f"decoded size {rgba.shape[1]}x{rgba.shape[0]} differs from header {w}x{h}")
    return np.ascontiguousarray(rgba)


# ------------------------------------------------------------------------------------------ layout


def _even(v: float) -> int:
    return int(round(v / 2)) * 2


def layout_logos(
    specs: list[tuple[LogoSpec, tuple[int, int]]], width: int, height: int
) -> list[tuple[int, Rect | None, str | None]]:
    """Place logos (given with their source sizes) without overlaps; None plus a reason when one won't fit.

    Logos sharing a corner form a row along the top/bottom edge, growing towards the centre, since
    landscape video has width to spare. Coordinates and sizes are even so chroma stays aligned.
    """
    placed: list[Rect] = []
    advance: dict[str, int] = dict.fromkeys(CORNERS, 0)
    out: list[tuple[int, Rect | None, str | None]] = []
    for index, (spec, (src_w, src_h)) in enumerate(specs):
        if spec.corner not in CORNERS:
            out.append((index, None, f"unknown corner {spec.corner!r}"))
            continue
        w = max(2, _even(spec.width_fraction * width))
        h = max(2, _even(w * src_h / src_w))
        margin = max(0, _even(spec.margin_fraction * width))
        offset = advance[spec.corner]
        x = margin + offset if spec.corner.endswith("left") else width - margin - offset - w
        y = margin if spec.corner.startswith("top") else height - margin - h
        rect = Rect(x, y, w, h)
        if x < 0 or y < 0 or x + w > width or y + h > height:
            out.append((index, None, f"{w}x{h} at {spec.corner} does not fit a {width}x{height} video"))
            continue
        if any(rect.overlaps(other) for other in placed):
            out.append((index, None, f"no room left at {spec.corner} for {w}x{h}"))
            continue
        placed.append(rect)
        advance[spec.corner] = offset + w + max(margin, 2)
        out.append((index, rect, None))
    return out


# ------------------------------------------------------------------------------------------- blend

_BT601 = (0.299, 0.114)  # (Kr, Kb) luma coefficients
_BT709 = (0.2126, 0.0722)


def prepare_logo(
    name: str, rgba: np.ndarray, rect: Rect, *, bt709: bool = False, full_range: bool = False
) -> PreparedLogo:
    """Scale once to the laid-out size and convert to premultiplied Y/U/V weights in the video's matrix.

    Premultiplying before scaling keeps the colour of transparent pixels from bleeding into edges;
    averaging the premultiplied chroma over 2x2 blocks is exactly an alpha-weighted subsample.
    """
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    premul = np.concatenate([rgba[..., :3].astype(np.float32) * alpha, rgba[..., 3:4]], axis=2)
    src = np.ascontiguousarray(np.clip(np.rint(premul), 0, 255).astype(np.uint8))
    interpolation = "AREA" if rect.w < rgba.shape[1] else "BICUBIC"
    scaled = av.VideoFrame.from_ndarray(src, format="rgba").reformat(
        width=rect.w, height=rect.h, interpolation=interpolation
    )
    arr = scaled.to_ndarray().astype(np.float32) / 255.0  # (h, w, 4) premultiplied
    a = arr[..., 3]
    p = np.minimum(arr[..., :3], a[..., None])  # bicubic overshoot must not exceed alpha
    kr, kb = _BT709 if bt709 else _BT601
    kg = 1.0 - kr - kb
    y_lin = kr * p[..., 0] + kg * p[..., 1] + kb * p[..., 2]  # premultiplied Y' in 0..a
    pb = (p[..., 2] - y_lin) / (2 * (1 - kb))
    pr = (p[..., 0] - y_lin) / (2 * (1 - kr))
    y_off, y_span, c_span = (0.0, 255.0, 255.0) if full_range else (16.0, 219.0, 224.0)
    pre_y = y_off * a + y_span * y_lin
    pre_u = 128 * a + c_span * pb
    pre_v = 128 * a + c_span * pr
    h2, w2 = rect.h // 2, rect.w // 2

    def sub(x: np.ndarray) -> np.ndarray:
        return x.reshape(h2, 2, w2, 2).mean(axis=(1, 3))

    a_c, pre_u, pre_v = sub(a), sub(pre_u), sub(pre_v)

    def weights(alpha: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inv = np.rint(256 * (1 - alpha)).astype(np.uint16)
        cap = (256 - inv).astype(np.float32) * 255  # keeps bg*inv + pre + 128 within uint16
        return inv, np.clip(np.rint(256 * pre), 0, cap).astype(np.uint16)

    inv_y, pre_y_i = weights(a, pre_y)
    inv_c, pre_u_i = weights(a_c, pre_u)
    _, pre_v_i = weights(a_c, pre_v)

    # Crop to the visible bounding box (in 2x2 blocks, so luma and chroma crops stay aligned).
    visible = (inv_c < 256) | (pre_u_i > 0) | (pre_v_i > 0)
    visible |= ((inv_y < 256) | (pre_y_i > 0)).reshape(h2, 2, w2, 2).any(axis=(1, 3))
    rows = np.flatnonzero(visible.any(axis=1))
    cols = np.flatnonzero(visible.any(axis=0))
    if rows.size == 0:
        r0 = r1 = c0 = c1 = 0
    else:
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    ys, xs = slice(2 * r0, 2 * r1), slice(2 * c0, 2 * c1)
    cs_r, cs_c = slice(r0, r1), slice(c0, c1)
    return PreparedLogo(
        name=name,
        rect=rect,
        x=rect.x + 2 * c0,
        y=rect.y + 2 * r0,
        inv_y=np.ascontiguousarray(inv_y[ys, xs]),
        pre_y=np.ascontiguousarray(pre_y_i[ys, xs] + 128),
        inv_c=np.ascontiguousarray(inv_c[cs_r, cs_c]),
        pre_u=np.ascontiguousarray(pre_u_i[cs_r, cs_c] + 128),
        pre_v=np.ascontiguousarray(pre_v_i[cs_r, cs_c] + 128),
        scratch_y=np.empty((2 * (r1 - r0), 2 * (c1 - c0)), np.uint16),
        scratch_c=np.empty((r1 - r0, c1 - c0), np.uint16),
    )


def _blend_view(view: np.ndarray, inv: np.ndarray, pre: np.ndarray, tmp: np.ndarray) -> None:
    np.multiply(view, inv, out=tmp)
    np.add(tmp, pre, out=tmp)
    np.right_shift(tmp, 8, out=tmp)
    np.copyto(view, tmp, casting="unsafe")


def blend_planes(y_plane: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray, logos: Sequence[PreparedLogo]) -> None:
    """Blend in place into 2-D uint8 views of a 4:2:0 picture's planes (e.g. a camera buffer before its encoder)."""
    for logo in logos:
        h, w = logo.inv_y.shape
        if h == 0 or w == 0:
            continue
        cx, cy = logo.x // 2, logo.y // 2
        _blend_view(y_plane[logo.y : logo.y + h, logo.x : logo.x + w], logo.inv_y, logo.pre_y, logo.scratch_y)
        hc, wc = logo.inv_c.shape
        _blend_view(u_plane[cy : cy + hc, cx : cx + wc], logo.inv_c, logo.pre_u, logo.scratch_c)
        _blend_view(v_plane[cy : cy + hc, cx : cx + wc], logo.inv_c, logo.pre_v, logo.scratch_c)


class FramePool:
    """A few reusable frames to blend into, since decoded frames must not be written to.

    Decoded frames share their buffers with the decoder's reference pictures, so drawing on them
    would smear the logo into later frames. av_frame_make_writable() would copy into a freshly
    allocated buffer on every frame; copying into recycled frames is about twice as fast.
    """

    def __init__(self, width: int, height: int, pix_fmt: str, size: int = 3) -> None:
        self._frames = [av.VideoFrame(width, height, pix_fmt) for _ in range(size)]
        self._next = 0

    def copy(self, src: av.VideoFrame) -> av.VideoFrame:
        dst = self._frames[self._next]
        self._next = (self._next + 1) % len(self._frames)
        dst.make_writable()  # no-op unless an encoder still holds a reference to it
        for sp, dp in zip(src.planes, dst.planes, strict=True):
            s_buf = np.frombuffer(sp, np.uint8)
            d_buf = np.frombuffer(dp, np.uint8)
            if sp.line_size == dp.line_size:
                np.copyto(d_buf, s_buf)
            else:
                w = sp.width
                np.copyto(d_buf.reshape(dp.height, dp.line_size)[:, :w], s_buf.reshape(sp.height, sp.line_size)[:, :w])
        return dst


def blend_logos(frame: av.VideoFrame, logos: Sequence[PreparedLogo]) -> None:
    """Blend in place into a frame the caller owns exclusively (see FramePool)."""
    if not logos:
        return
    y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size) for p in frame.planes[:3])
    blend_planes(y, u, v, logos)


def share_scratch(logos: Sequence[PreparedLogo]) -> list[PreparedLogo]:
    """The same logos with one scratch buffer between them (one set is blended by one thread, logo after
    logo): a frame's blend then touches 0.17 MB of scratch instead of 0.44 MB (four logos at 1080p)."""
    if not logos:
        return []
    scratch = np.empty(max(logo.inv_y.size for logo in logos), np.uint16)
    return [replace(logo, scratch_y=scratch[: logo.inv_y.size].reshape(logo.inv_y.shape),
                    scratch_c=scratch[: logo.inv_c.size].reshape(logo.inv_c.shape)) for logo in logos]


def to_stored(rect: Rect, rgba: np.ndarray, clockwise: int, shown_w: int, shown_h: int) -> tuple[Rect, np.ndarray]:
    """A logo laid out in the shown picture, moved and turned to where it lies in the stored frame.

    The player turns stored frames `clockwise`; so the stored picture is the shown one turned back.
    """
    x, y, w, h = rect.x, rect.y, rect.w, rect.h
    if clockwise == 90:
        return Rect(y, shown_w - x - w, h, w), np.ascontiguousarray(np.rot90(rgba, 1))
    if clockwise == 180:
        return Rect(shown_w - x - w, shown_h - y - h, w, h), np.ascontiguousarray(np.rot90(rgba, 2))
    if clockwise == 270:
        return Rect(shown_h - y - h, x, h, w), np.ascontiguousarray(np.rot90(rgba, 3))
    return rect, rgba


def load_logos(
    specs: Sequence[LogoSpec],
    width: int,
    height: int,
    warnings: list[str],
    *,
    bt709: bool = False,
    full_range: bool = False,
    rotation: int = 0,
) -> list[PreparedLogo]:
    """Load, lay out and prepare every usable logo; problems become warnings, never failures.

    `width` x `height` is the frames' stored size; `rotation` the clockwise turn a player gives them
    (their display matrix): logos are laid out as the video is shown, then turned to the stored pixels.
    """
    loaded: list[tuple[LogoSpec, np.ndarray]] = []
    for spec in specs:
        try:
            loaded.append((spec, load_logo_rgba(Path(spec.path))))
        except LogoError as exc:
            _warn(warnings, f"logo {Path(spec.path).name} unusable: {exc}; skipped")
        except Exception as exc:  # a bad logo must never fail the job
            _warn(warnings, f"logo {Path(spec.path).name} unusable: {type(exc).__name__}: {exc}; skipped")
    sizes = [(spec, (rgba.shape[1], rgba.shape[0])) for spec, rgba in loaded]
    turn = rotation % 360
    shown_w, shown_h = (height, width) if turn in (90, 270) else (width, height)
    placements = layout_logos(sizes, shown_w, shown_h)
    prepared: list[PreparedLogo] = []
    for index, rect, reason in placements:
        spec, rgba = loaded[index]
        name = Path(spec.path).name
        if rect is None:
            _warn(warnings, f"logo {name} skipped: {reason}")
            continue
        try:
            stored_rect, stored_rgba = to_stored(rect, rgba, turn, shown_w, shown_h)
            prepared.append(prepare_logo(name, stored_rgba, stored_rect, bt709=bt709, full_range=full_range))
        except Exception as exc:
            _warn(warnings, f"logo {name} unusable: {type(exc).__name__}: {exc}; skipped")
    return share_scratch(prepared)


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)
