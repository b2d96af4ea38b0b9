"""How a recording file says when its frames were captured.

The MP4 muxer rebases every file's first timestamp to zero, so the capture time of the first packet
is stored in the file itself (metadata key `ezrec_first_capture`, ISO-8601 UTC) and every other
frame's capture time is that plus its timestamp distance from the first packet. Each segment and
each joined recording is therefore self-describing, even when read on its own or after a kill -9.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from shared.timeutil import isoformat_z

FIRST_CAPTURE_KEY = "ezrec_first_capture"
MOVFLAG_METADATA = "use_metadata_tags"


def stamp(container: av.container.OutputContainer, first_capture: datetime) -> None:
    """Call before the first packet is muxed (the header carries the metadata)."""
    container.metadata[FIRST_CAPTURE_KEY] = isoformat_z(first_capture)


def first_capture(container: av.container.InputContainer) -> datetime | None:
    text = container.metadata.get(FIRST_CAPTURE_KEY)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def capture_times(path: Path) -> list[datetime]:
    """Capture time of every frame of a recording (segment or joined), in presentation order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        anchor = first_capture(c)
        if anchor is None:
            raise ValueError(f"{path} carries no {FIRST_CAPTURE_KEY} metadata")
        first_pts: int | None = None
        times = []
        for packet in c.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            first_pts = packet.pts if first_pts is None else first_pts
            times.append(anchor + timedelta(seconds=float((packet.pts - first_pts) * tb)))
    return sorted(times)
