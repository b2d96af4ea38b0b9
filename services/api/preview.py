"""The picture beside the dashboard's logo settings: one frame of the camera's format with the user's logos
placed by the same code the worker uses (shared/logo_layout.py, then shared/overlay.py's layout and blend),
so what the operator sees is where the logos will be, at the size they will have."""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np

from shared.logo_layout import logo_specs
from shared.models import UserSettings
from shared.overlay import blend_logos, load_logos
from shared.store import Store, StoreError
from shared.thumbnails import encode_jpeg


def court_frame(width: int, height: int) -> av.VideoFrame:
    """A stand-in for the camera's picture (limited-range BT.601 yuv420p): a green court with white lines,
    so logos of any colour stand out and their size can be judged against the lines."""
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    y = (95 + 25 * ys + 10 * xs).astype(np.uint8)
    inset_x, inset_y, line = width // 10, height // 8, max(2, height // 135)
    court = np.zeros((height, width), bool)
    court[inset_y : height - inset_y, inset_x : inset_x + line] = True
    court[inset_y : height - inset_y, width - inset_x - line : width - inset_x] = True
    court[inset_y : inset_y + line, inset_x : width - inset_x] = True
    court[height - inset_y - line : height - inset_y, inset_x : width - inset_x] = True
    court[inset_y : height - inset_y, width // 2 - line // 2 : width // 2 + line - line // 2] = True
    y[court] = 225
    chroma = court.reshape(height // 2, 2, width // 2, 2).any(axis=(1, 3))
    u = np.where(chroma, 128, 110).astype(np.uint8)
    v = np.where(chroma, 128, 100).astype(np.uint8)
    data = np.concatenate([y, u.reshape(height // 4, width), v.reshape(height // 4, width)])
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


def render_preview(store: Store, settings: UserSettings | None, width: int, height: int, out_width: int,
                   scratch: Path) -> tuple[bytes, list[str]]:
    """JPEG `out_width` wide of a `width` x `height` frame with the logos; the warnings say which were left out
    and why (unavailable, undecodable, or too big for the frame), as the worker would report them."""
    warnings: list[str] = []
    frame = court_frame(width - width % 2, height - height % 2)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        def fetch(path: str) -> Path | None:
            try:
                return store.get_object("media", path, Path(tmp) / path.replace("/", "_"))
            except (StoreError, OSError, ValueError) as exc:
                warnings.append(f"logo {path} unavailable: {exc}")
                return None

        logos = load_logos(logo_specs(settings, fetch), frame.width, frame.height, warnings)
    blend_logos(frame, logos)
    return encode_jpeg(frame, min(out_width, frame.width) // 2 * 2), warnings
