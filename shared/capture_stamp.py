"""What a recorder segment says about how its frames were made, so the worker can trust it as the video.

A segment the recorder encoded from raw frames carries two MP4 metadata keys (a remuxed camera's
segments carry neither: its frames were never decoded, so no logo could be drawn on them):

  ezrec_format  OutputFormat.to_json() of the encoder that wrote it (shared/video_format.py)
  ezrec_logos   logo_fingerprint() of the logos blended into every one of its frames ("none": none)

The worker joins such a segment by packet copy only when both still hold for the booking when it is
finished: the same format as the prepared intro and the same logos, content and placement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from shared.file_hash import file_sha256
from shared.overlay import LogoSpec

FORMAT_KEY = "ezrec_format"
LOGOS_KEY = "ezrec_logos"
NO_LOGOS = "none"


def logo_fingerprint(logos: Sequence[LogoSpec]) -> str:
    """Content and placement of the logos, in drawing order; a renamed but identical file keeps it."""
    if not logos:
        return NO_LOGOS
    parts = [
        {"sha256": file_sha256(spec.path), "corner": spec.corner,
         "width_fraction": round(spec.width_fraction, 6), "margin_fraction": round(spec.margin_fraction, 6)}
        for spec in logos
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def stamp(format_json: str, logos: str) -> dict[str, str]:
    """The metadata to put on a segment's container before its header is written."""
    return {FORMAT_KEY: format_json, LOGOS_KEY: logos}


def read(metadata: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(format json, logo fingerprint) of a segment; (None, None) for one the recorder did not encode."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    return lowered.get(FORMAT_KEY), lowered.get(LOGOS_KEY)
