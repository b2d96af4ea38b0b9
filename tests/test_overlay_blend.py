"""The logo blend's fast paths give exactly the bytes of the plain per-logo formula.

shared/overlay.py blends a set of logos through one shared scratch buffer, taking the frame's plane views
once; the recorder (frames), Picamera2's pre_callback (a padded camera buffer) and the worker's transcode
all call it. Each must draw the same bytes: out = (bg * inv + pre) >> 8 per sample, transparent samples
untouched.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from services.recorder.picam import i420_planes
from shared.logo_layout import booking_logos
from shared.overlay import PreparedLogo, blend_logos, blend_planes, load_logos
from tests.media import png_bytes

W, H = 640, 360


def _soft_logo(path: Path, size: tuple[int, int], rgb: tuple[int, int, int], seed: int) -> Path:
    """Opaque body, soft edges, a half-transparent band and fully transparent corners: every kind of alpha."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    edge = np.clip(np.minimum.reduce([xx, yy, w - 1 - xx, h - 1 - yy]) / 4, 0, 1)
    alpha = edge * np.where((yy > h * 0.6) & (yy < h * 0.8), 0.5, 1.0)
    alpha[: h // 5, : w // 5] = 0
    img = np.zeros((h, w, 4), np.uint8)
    img[..., :3] = rgb
    img[..., :3] += np.random.default_rng(seed).integers(0, 40, (h, w, 1), dtype=np.uint8)
    img[..., 3] = np.rint(alpha * 255).astype(np.uint8)
    path.write_bytes(png_bytes(img))
    return path


def _logos(tmp_path: Path) -> list[PreparedLogo]:
    files = [_soft_logo(tmp_path / "user.png", (120, 44), (230, 30, 40), 1),
             _soft_logo(tmp_path / "sponsor1.png", (100, 50), (20, 90, 220), 2),
             _soft_logo(tmp_path / "sponsor2.png", (80, 80), (250, 200, 20), 3),
             _soft_logo(tmp_path / "sponsor3.png", (128, 32), (200, 200, 200), 4)]
    warnings: list[str] = []
    logos = load_logos(booking_logos(files), W, H, warnings)
    assert len(logos) == 4 and not warnings
    return logos


def _picture() -> np.ndarray:
    """A yuv420p picture (h * 3/2, w) with every sample value present under the logos."""
    return np.random.default_rng(7).integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)


def _reference(picture: np.ndarray, logos: list[PreparedLogo]) -> np.ndarray:
    """The formula, sample by sample in Python ints, one logo at a time, with no shared buffers."""
    out = picture.astype(np.int64)
    y = out[:H]
    u = out[H : H + H // 4].reshape(H // 2, W // 2)
    v = out[H + H // 4 :].reshape(H // 2, W // 2)
    for logo in logos:
        h, w = logo.inv_y.shape
        region = y[logo.y : logo.y + h, logo.x : logo.x + w]
        region[...] = (region * logo.inv_y + logo.pre_y) >> 8
        cy, cx = logo.y // 2, logo.x // 2
        hc, wc = logo.inv_c.shape
        for plane, pre in ((u, logo.pre_u), (v, logo.pre_v)):
            region = plane[cy : cy + hc, cx : cx + wc]
            region[...] = (region * logo.inv_c + pre) >> 8
    return out.astype(np.uint8)


def test_the_set_shares_one_scratch_buffer_and_still_draws_the_formula_exactly(tmp_path):
    logos = _logos(tmp_path)
    scratch = {logo.scratch_y.__array_interface__["data"][0] for logo in logos}
    assert len(scratch) == 1, "one buffer for the set, not one per logo"
    picture = _picture()
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    blend_logos(frame, logos)
    drawn = frame.to_ndarray()
    assert np.array_equal(drawn, _reference(picture, logos))
    assert not np.array_equal(drawn, picture), "the logos are drawn"


def test_transparent_samples_stay_bit_exact(tmp_path):
    logos = _logos(tmp_path)
    picture = _picture()
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    blend_logos(frame, logos)
    drawn = frame.to_ndarray()
    for logo in logos:
        h, w = logo.inv_y.shape
        clear = (logo.inv_y == 256) & (logo.pre_y == 128)
        assert clear.any(), "the test logos have fully transparent corners"
        region = (slice(logo.y, logo.y + h), slice(logo.x, logo.x + w))
        assert np.array_equal(drawn[region][clear], picture[region][clear])


def test_a_padded_camera_buffer_gets_the_same_bytes_as_a_frame(tmp_path):
    """Picamera2's pre_callback (blend_planes into a strided YUV420 buffer) and the recorder's frames agree."""
    logos = _logos(tmp_path)
    picture = _picture()
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    blend_logos(frame, logos)
    stride = W + 64
    buffer = np.zeros((H * 3 // 2, stride), np.uint8)
    y, u, v = i420_planes(buffer, W, H)
    y[...] = picture[:H]
    u[...] = picture[H : H + H // 4].reshape(H // 2, W // 2)
    v[...] = picture[H + H // 4 :].reshape(H // 2, W // 2)
    blend_planes(y, u, v, logos)
    assert np.array_equal(y, frame.to_ndarray()[:H])
    drawn = frame.to_ndarray()
    assert np.array_equal(u, drawn[H : H + H // 4].reshape(H // 2, W // 2))
    assert np.array_equal(v, drawn[H + H // 4 :].reshape(H // 2, W // 2))
