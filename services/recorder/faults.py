"""Recorder faults on ezrec/<camera>/recorder/fault: raised when they happen, cleared when they end.

The status service shows the camera fault and raises its alert from these; a fault never stops
the recorder, which retries with backoff.
"""

from __future__ import annotations

import logging
import threading

from shared.bus import MqttBus
from shared.payloads import RecorderFault

log = logging.getLogger(__name__)

CAMERA_KINDS = ("camera_open", "camera_stall", "camera_error")
RETRY_S = (0.5, 1, 2, 5, 10, 30)
"""The camera's waits between attempts (shared.backoff.StepBackoff)."""


class FaultReporter:
    def __init__(self, bus: MqttBus, camera_id: str) -> None:
        self.bus = bus
        self.camera_id = camera_id
        self.active: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, kind: str, reason: str, *, booking_id: str | None = None,
               retry_in_s: float | None = None, repeat: bool = True) -> None:
        """Publish a fault; with repeat=False only when it is new (a persisting condition is said once)."""
        with self._lock:
            if not repeat and self.active.get(kind) == reason:
                return
            self.active[kind] = reason
        log.error("recorder fault %s: %s%s", kind, reason, f" (retry in {retry_in_s:g}s)" if retry_in_s else "")
        self._publish(RecorderFault(camera_id=self.camera_id, kind=kind, reason=reason, active=True,  # type: ignore[arg-type]
                                    booking_id=booking_id, retry_in_s=retry_in_s))

    def clear(self, *kinds: str) -> None:
        for kind in kinds:
            with self._lock:
                reason = self.active.pop(kind, None)
            if reason is None:
                continue
            log.info("recorder fault %s cleared", kind)
            self._publish(RecorderFault(camera_id=self.camera_id, kind=kind, reason=f"cleared: {reason}",  # type: ignore[arg-type]
                                        active=False))

    def _publish(self, fault: RecorderFault) -> None:
        try:
            self.bus.publish(self.bus.topics.recorder_fault, fault)
        except Exception:
            log.exception("could not publish a recorder fault")
