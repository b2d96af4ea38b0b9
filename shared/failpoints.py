"""Fault injection for the crash tests and the soak, driven by environment variables; inert when they are unset.

One module for every service (the worker's crash points, the recorder's camera freeze), so a test names a fault
the same way whichever process it strikes. Nothing here runs in production: with the variables unset each hook
returns at once.

EZREC_TEST_CRASH_AT=<point>[:<n>]  SIGKILL this process the n-th time (default the 1st) it reaches <point>
    (read once, at import: the tests set it in the environment of the process they start). The worker's points:
    encode         a video frame was encoded (mid-encode of an intro, a segment or a whole recording)
    remux_linked   a segment is linked as its finished part (remux path), not yet recorded as done
    join           the final join has muxed its first video packet
    before_upload  the finished video exists, nothing uploaded
    after_object   the object is stored, the videos row is not written
    after_row      the videos row is written, the job is not marked done
EZREC_TEST_FRAME_DELAY_S=<s>  sleep this long per encoded frame (a slow machine, so a job lasts long enough to be
    killed from outside)
EZREC_TEST_CAMERA_FREEZE_FILE=<path>  while <path> exists, the recorder's synthetic camera delivers no frame: its
    read blocks, as a hung sensor's does (nothing queued, nothing invented), and the recorder's stall watchdog
    (CAMERA_STALL_S) must notice. Once the file is gone frames flow again, on the same wall-clock grid (the frames
    due during the freeze are lost, as a real camera loses them). Read when a camera opens, so a test may set it
    late.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

CRASH_ENV = "EZREC_TEST_CRASH_AT"
FRAME_DELAY_ENV = "EZREC_TEST_FRAME_DELAY_S"
FREEZE_ENV = "EZREC_TEST_CAMERA_FREEZE_FILE"
FREEZE_POLL_S = 0.05

_CRASH = os.environ.get(CRASH_ENV, "")
_DELAY = float(os.environ.get(FRAME_DELAY_ENV, "0") or 0)
_seen: Counter[str] = Counter()


def reached(point: str) -> None:
    """A crash point: SIGKILL here when EZREC_TEST_CRASH_AT names it (and this is its n-th time)."""
    if not _CRASH:
        return
    name, _, nth = _CRASH.partition(":")
    if name != point:
        return
    _seen[point] += 1
    if _seen[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def frame_encoded() -> None:
    """The `encode` crash point, after the per-frame delay EZREC_TEST_FRAME_DELAY_S asks for."""
    if _DELAY:
        time.sleep(_DELAY)
    reached("encode")


def camera_freeze_file() -> Path | None:
    """The freeze file named by the environment, read when a camera opens (so a test may set it late)."""
    value = os.environ.get(FREEZE_ENV, "")
    return Path(value) if value else None


def hold_while_frozen(freeze: Path | None) -> None:
    """Blocks for as long as the freeze file exists; returns at once when there is none."""
    if freeze is None:
        return
    while freeze.exists():
        time.sleep(FREEZE_POLL_S)
