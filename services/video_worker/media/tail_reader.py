"""A segment the recorder is still writing, read as a stream: the worker encodes it as its fragments land.

The recorder writes fragmented MP4 and flushes each fragment (one GOP, about a second) as soon as it
is complete, so a reader that waits at the end of the file instead of stopping sees the whole segment
about as fast as the camera records it. At the booking's end only the last fragment is left to encode.

The reader has no seek(): PyAV then treats it as a pipe and the MP4 demuxer reads fragments in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

READ_CHUNK = 1 << 20


class TailReader:
    def __init__(self, path: Path, is_closed: Callable[[], bool], *, stall_s: float = 30.0, poll_s: float = 0.05,
                 check_every_s: float = 0.25, stop: threading.Event | None = None) -> None:
        self.path = path
        self._file = path.open("rb")
        self._is_closed = is_closed
        self._stall_s = stall_s
        self._poll_s = poll_s
        self._check_every_s = check_every_s
        self._stop = stop
        self._closed = False
        self._last_growth = self._last_check = time.monotonic()
        self.stalled = False  # gave up: the file stopped growing and was never declared closed
        self.interrupted = False  # gave up: the worker is stopping

    @property
    def complete(self) -> bool:
        """True when everything the writer wrote was read (not cut short by a stall or a stop)."""
        return not (self.stalled or self.interrupted)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else READ_CHUNK
        while True:
            data = self._file.read(size)
            if data:
                self._last_growth = time.monotonic()
                return data
            if self._closed:
                return b""
            now = time.monotonic()
            if now - self._last_check >= self._check_every_s:
                self._last_check = now
                if self._is_closed():
                    self._closed = True  # read once more: the last bytes were written before the close was announced
                    continue
            if self._stop is not None and self._stop.is_set():
                self.interrupted = True
                return b""
            if now - self._last_growth > self._stall_s:
                self.stalled = True
                return b""
            time.sleep(self._poll_s)

    def close(self) -> None:
        self._file.close()
