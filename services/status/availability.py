"""Which of the four services are up: each judged by its heartbeat and its will, never by one message.

- The will: every service publishes `online` *retained* on its availability topic when it connects and
  `offline` retained when it stops; the broker publishes its retained last will `offline` when it dies.
  The status service subscribes with Retain As Published, so a plain (non-retained) message on that topic,
  which no service ever sends, is told apart and ignored. Only `online` / `offline` of the four known
  services count; anything else is dropped (logged, not stored: the map never grows).
- The heartbeat: DATA_DIR/state/heartbeat-<service>.json, written every 5 s by the process itself with
  whether its MQTT connection is up. Where it can be read (every service on one device, or containers
  sharing the data volume), it outranks the will: a fresh heartbeat of a connected process is `online`
  whatever a message claims, a fresh one of a disconnected process is `offline` (its events cannot flow).
  A stale or missing heartbeat (the process died, or runs on another host) leaves the will to decide.

`unknown` means neither witness has spoken yet; the snapshot never carries it (see StatusService).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.health import HEARTBEAT_STALE_S
from shared.runtime import heartbeat_path
from shared.settings import Settings
from shared.topics import SERVICES

log = logging.getLogger(__name__)

ONLINE, OFFLINE, UNKNOWN = "online", "offline", "unknown"
_CLAIMS = (ONLINE, OFFLINE)


@dataclass(frozen=True)
class Heartbeat:
    age_s: float
    details: dict[str, Any]

    @property
    def fresh(self) -> bool:
        return self.age_s <= HEARTBEAT_STALE_S

    @property
    def connected(self) -> bool | None:
        """The process's own word on its MQTT connection (None: it does not say)."""
        value = self.details.get("mqtt")
        return value if isinstance(value, bool) else None


def read_heartbeat(settings: Settings, service: str, now: Callable[[], float] = time.time) -> Heartbeat | None:
    try:
        data = json.loads(heartbeat_path(settings, service).read_text())
        return Heartbeat(age_s=now() - float(data["at"]), details=data if isinstance(data, dict) else {})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def judge(will: str | None, heartbeat: Heartbeat | None) -> str:
    if heartbeat is not None and heartbeat.fresh:
        return OFFLINE if heartbeat.connected is False else ONLINE
    return will or UNKNOWN


class Availability:
    """The wills heard on the bus (paho's thread) and the heartbeats on disk (read when judged)."""

    def __init__(self, settings: Settings, own: str = "status") -> None:
        self.settings = settings
        self.own = own
        self._wills: dict[str, str] = {}
        self._lock = threading.Lock()

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """ezrec/<camera>/<service>/availability, with the retain flag as published."""
        service = topic.rsplit("/", 2)[-2]
        if service not in SERVICES:
            log.debug("ignoring availability of unknown service %r", service[:40])
            return
        claim = payload.decode("utf-8", errors="replace").strip()
        if claim not in _CLAIMS:
            log.warning("ignoring availability %r for %s: not online/offline", claim[:40], service)
            return
        if not retained:
            log.warning("ignoring a plain (non-retained) %r for %s: a service's will and its online are retained",
                        claim, service)
            return
        with self._lock:
            self._wills[service] = claim

    def heartbeat(self, service: str) -> Heartbeat | None:
        return read_heartbeat(self.settings, service)

    def judged(self) -> dict[str, str]:
        """Every known service, `online`, `offline` or (no witness yet) `unknown`. This process is online."""
        with self._lock:
            wills = dict(self._wills)
        return {service: ONLINE if service == self.own else judge(wills.get(service), self.heartbeat(service))
                for service in SERVICES}
