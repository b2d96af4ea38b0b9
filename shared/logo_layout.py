"""Which logos a booking carries and where: the one place a user's media becomes LogoSpecs.

The recorder (logo at capture) and the worker (fallback transcode) both build a booking's logos here,
so a segment's stamped fingerprint (shared/capture_stamp.py) equals the worker's for the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.overlay import Corner, LogoSpec

MAX_LOGOS = 4
"""The user's logo plus up to three sponsor logos."""
CORNERS: tuple[Corner, ...] = ("top-right", "top-left", "bottom-right", "bottom-left")
"""Drawing order of corners: the user's logo top right, sponsors in the other corners."""


def booking_logos(paths: Sequence[Path]) -> list[LogoSpec]:
    """Specs for the user's logo files in their settings' order (user logo first, then sponsors)."""
    return [LogoSpec(path=Path(p), corner=CORNERS[i % len(CORNERS)]) for i, p in enumerate(paths[:MAX_LOGOS])]
