"""Runs a camera on its own thread, so the recorder can notice a stall and never blocks on a dead device.

The queue between them is the camera's buffer: a short pause in the recorder (a segment rotation,
a busy moment) costs latency, not frames. When the queue is full the newest item is dropped, as a
sensor would; packets dropped from an encoded stream mark the next one `after_gap` so the writer
waits for a keyframe. A camera stuck inside a read is abandoned: its thread closes it if it ever
returns.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time

from services.recorder.camera import Camera, CameraError, CameraStalled, Captured, CapturedPacket

log = logging.getLogger(__name__)

_POLL_S = 0.1


class CameraFeed:
    def __init__(self, camera: Camera, stall_s: float, buffer_s: float = 3.0) -> None:
        self.camera = camera
        self.stall_s = stall_s
        self.dropped = 0
        self._queue: queue.Queue[Captured] = queue.Queue(maxsize=max(8, int(camera.fps * buffer_s)))
        self._stop = threading.Event()
        self._error: CameraError | None = None
        self._stalled = False
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    def start(self) -> CameraFeed:
        self._thread.start()
        return self

    def _run(self) -> None:
        gap = False
        try:
            for item in self.camera.frames():
                if self._stop.is_set():
                    break
                if gap and isinstance(item, CapturedPacket):
                    item = dataclasses.replace(item, after_gap=True)
                try:
                    self._queue.put_nowait(item)
                    gap = False
                except queue.Full:
                    self.dropped += 1
                    gap = True
            else:
                if not self._stop.is_set():
                    self._error = CameraError("camera stopped delivering frames")
        except CameraError as exc:
            self._error = exc
        except Exception as exc:  # any failure inside a camera is a camera fault, not a recorder crash
            self._error = CameraError(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                self.camera.close()
            except Exception:
                log.exception("closing the camera failed")

    def get(self) -> Captured:
        """The next item; raises CameraError when the camera failed, CameraStalled after stall_s of silence.

        Items already captured before a failure are still handed out first, so none is lost.
        """
        deadline = time.monotonic() + self.stall_s
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._error is not None:
                    raise self._error from None
                if time.monotonic() >= deadline:
                    self._stalled = True
                    raise CameraStalled(f"no frame from the camera for {self.stall_s:g}s") from None

    def close(self) -> None:
        """Ask the camera thread to stop; it closes the camera itself (never from this thread)."""
        self._stop.set()
        if not self._stalled:
            self._thread.join(timeout=0.5)  # a healthy camera returns within a frame
        if self._thread.is_alive():
            log.warning("camera thread is stuck in a read; abandoning it (it closes the camera if it returns)")
