"""Alert evaluation: thresholds on a snapshot -> `raised` / `cleared` events, each sent once.

Pure functions: `checks()` reads a snapshot, `evaluate()` folds checks into the alert book and
returns the transitions. No flapping: disk and temperature clear only past a hysteresis margin;
availability-based alerts change state only after the condition held for `hold_s`. The book is
persisted (DATA_DIR/state/status-alerts.json), so a restart neither re-raises nor forgets an alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from shared.atomic import write_text_atomic
from shared.payloads import Alert, StatusSnapshot
from shared.timeutil import UtcDatetime

log = logging.getLogger(__name__)

AlertKind = Literal["disk_low", "temperature_high", "service_offline", "camera_fault", "booking_at_risk",
                    "cloud_refused", "cloud_fault"]
State = Literal["raised", "cleared"]
WATCHED_SERVICES = ("api", "recorder", "worker")
"""The status service does not watch itself: when it is offline nobody could publish that."""


@dataclass(frozen=True)
class Thresholds:
    disk_free_gb: float
    temperature_c: float
    next_booking_minutes: float
    hold_s: float
    temperature_margin_c: float = 5.0

    @property
    def disk_margin_gb(self) -> float:
        """Clear a disk alert only once this much above the threshold (a deleted file must not toggle it)."""
        return max(1.0, self.disk_free_gb * 0.1)


@dataclass(frozen=True)
class Check:
    """One alert condition observed now. active=None: cannot tell now (leave the alert as it is)."""

    id: str
    kind: AlertKind
    active: bool | None
    message: str
    value: float | str | None = None
    threshold: float | None = None
    raise_after_s: float = 0.0
    clear_after_s: float = 0.0


class AlertRecord(BaseModel):
    id: str
    kind: AlertKind
    state: State = "cleared"
    changed_at: UtcDatetime | None = None
    pending_since: UtcDatetime | None = Field(None, description="when the condition started to disagree with state")


class AlertBook(BaseModel):
    records: dict[str, AlertRecord] = Field(default_factory=dict)

    def raised(self) -> list[str]:
        return sorted(k for k, r in self.records.items() if r.state == "raised")


def checks(snap: StatusSnapshot, t: Thresholds, raised: set[str]) -> list[Check]:
    """Every condition the snapshot lets us judge; `raised` selects the hysteresis side."""
    out: list[Check] = []

    limit = t.disk_free_gb + (t.disk_margin_gb if "disk_low" in raised else 0.0)
    out.append(Check(
        "disk_low", "disk_low", snap.disk_free_gb < limit,
        f"{snap.disk_free_gb:.1f} GB free on the data disk (alert below {t.disk_free_gb:g} GB)",
        snap.disk_free_gb, t.disk_free_gb))

    temp = snap.cpu_temperature_c
    limit = t.temperature_c - (t.temperature_margin_c if "temperature_high" in raised else 0.0)
    out.append(Check(
        "temperature_high", "temperature_high", None if temp is None else temp > limit,
        f"CPU at {temp if temp is not None else float('nan'):.1f} °C (alert above {t.temperature_c:g} °C)",
        temp, t.temperature_c))

    for service in WATCHED_SERVICES:
        availability = snap.services.get(service, "unknown")
        active = {"offline": True, "online": False}.get(availability)  # unknown: never reported yet
        out.append(Check(
            f"service_offline:{service}", "service_offline", active, f"{service} is {availability}",
            availability, None, t.hold_s, t.hold_s))

    out.append(Check(
        "camera_fault", "camera_fault", snap.camera_fault is not None,
        f"camera fault: {snap.camera_fault}" if snap.camera_fault else "camera working",
        snap.camera_fault, None, 0.0, t.hold_s))

    out.append(_booking_at_risk(snap, t))
    out.extend(_cloud(snap, raised))
    return out


def _cloud(snap: StatusSnapshot, raised: set[str]) -> list[Check]:
    """One alert per refused cloud write and per cloud fault (the store names them); when the store could not
    say this round, the raised ones stay as they are."""
    if snap.cloud_problems is None:
        return [Check(a, "cloud_fault" if a.startswith("cloud_fault:") else "cloud_refused", None, "")
                for a in raised if a.startswith(("cloud_refused:", "cloud_fault:"))]
    return [Check(p.id, p.kind, True, p.message, p.key) for p in snap.cloud_problems]


def _booking_at_risk(snap: StatusSnapshot, t: Thresholds) -> Check:
    """A booking is on now or starts within N minutes and the recorder is not online to record it."""
    recorder = snap.services.get("recorder", "unknown")
    booking, minutes = None, None
    if snap.current_booking is not None:
        booking, minutes = snap.current_booking, 0.0
    elif snap.next_booking is not None:
        minutes = (snap.next_booking.start_time - snap.collected_at).total_seconds() / 60
        if minutes <= t.next_booking_minutes:
            booking = snap.next_booking
    active = booking is not None and recorder != "online"
    message = (f"booking {booking.id} starts in {max(minutes or 0, 0):.0f} min and the recorder is {recorder}"
               if booking is not None else f"no booking within {t.next_booking_minutes:g} min or recorder online")
    return Check("booking_at_risk", "booking_at_risk", active, message,
                 round(minutes, 1) if minutes is not None else None, t.next_booking_minutes, t.hold_s, t.hold_s)


def evaluate(found: list[Check], book: AlertBook, now: datetime, camera_id: str) -> tuple[AlertBook, list[Alert]]:
    """Fold this round's checks into the book; return the new book and the transitions to publish."""
    records = {k: r.model_copy() for k, r in book.records.items()}
    events: list[Alert] = []
    seen = {c.id for c in found}
    # An alert raised earlier whose condition is no longer observed at all clears (after its hold).
    gone = [Check(r.id, r.kind, False, f"{r.id} no longer observed", None, None, 0.0, 0.0)
            for r in records.values() if r.state == "raised" and r.id not in seen]
    for check in [*found, *gone]:
        record = records.get(check.id) or AlertRecord(id=check.id, kind=check.kind)
        records[check.id] = record
        if check.active is None:
            record.pending_since = None
            continue
        want: State = "raised" if check.active else "cleared"
        if want == record.state:
            record.pending_since = None
            continue
        record.pending_since = record.pending_since or now
        hold = check.raise_after_s if want == "raised" else check.clear_after_s
        if (now - record.pending_since).total_seconds() < hold:
            continue
        record.state, record.changed_at, record.pending_since = want, now, None
        events.append(Alert(camera_id=camera_id, id=check.id, kind=check.kind, state=want,
                            message=check.message, value=check.value, threshold=check.threshold, at=now))
    # Records that never raised and are quiet carry no information: keep the book small.
    records = {k: r for k, r in records.items() if r.state == "raised" or r.pending_since or r.changed_at}
    return AlertBook(records=records), events


def load_book(path: Path) -> AlertBook:
    try:
        return AlertBook.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return AlertBook()
    except (OSError, ValidationError) as exc:
        log.warning("ignoring unreadable alert state %s: %s", path, exc)
        return AlertBook()


def save_book(path: Path, book: AlertBook) -> None:
    write_text_atomic(path, book.model_dump_json(indent=1))
