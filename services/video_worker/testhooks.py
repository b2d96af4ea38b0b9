"""Fault injection for the crash tests, driven by environment variables; inert when they are unset.

EZREC_TEST_CRASH_AT=<point>[:<n>]  SIGKILL this process the n-th time (default 1st) it reaches <point>:
    encode         a video frame was encoded (mid-encode of an intro, a segment or a whole recording)
    join           the final join has muxed its first video packet
    before_upload  the finished video exists, nothing uploaded
    after_object   the object is stored, the videos row is not written
    after_row      the videos row is written, the job is not marked done
EZREC_TEST_FRAME_DELAY_S=<s>  sleep this long per encoded frame (a slow machine, so a job lasts long enough
    to be killed from outside)
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

_CRASH = os.environ.get("EZREC_TEST_CRASH_AT", "")
_DELAY = float(os.environ.get("EZREC_TEST_FRAME_DELAY_S", "0") or 0)
_seen: Counter[str] = Counter()


def reached(point: str) -> None:
    if not _CRASH:
        return
    name, _, nth = _CRASH.partition(":")
    if name != point:
        return
    _seen[point] += 1
    if _seen[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def frame_encoded() -> None:
    if _DELAY:
        time.sleep(_DELAY)
    reached("encode")
