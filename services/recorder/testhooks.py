"""Fault injection for the soak and the tests, driven by the environment; inert when it is unset.

EZREC_TEST_CAMERA_FREEZE_FILE=<path>  while <path> exists, the synthetic camera delivers no frame: its read
    blocks, as a hung sensor's does (nothing queued, nothing invented), and the recorder's stall watchdog
    (CAMERA_STALL_S) must notice. Once the file is gone frames flow again, on the same wall-clock grid (the
    frames due during the freeze are lost, as a real camera loses them).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FREEZE_ENV = "EZREC_TEST_CAMERA_FREEZE_FILE"
FREEZE_POLL_S = 0.05


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
