"""Bookings whose slot passed unrecorded become `missed`, with the reason (the rule: docs/bookings.md).

The API judges, because it owns the bookings and runs whether or not the recorder does (a recorder that is
down, the commonest cause, cannot say it missed anything). A `confirmed` booking of this device's camera
whose end is more than BOOKING_MISSED_AFTER_S past, with no recording on the device (neither
RAW_RECORDINGS_DIR/<id>.mp4 nor the segment folder <id>/), is marked `missed`. Anything recorded keeps
it out: the recorder will finalise it and mark it `completed`. And `missed` sits before `completed`, so a
recording that turns up after the check (a recorder that restarts and joins leftover segments) still
completes the booking; the reason is then cleared.

The reason is the first of these that holds, from what the API heard on the bus and the recorder's
heartbeat file:

- `camera_fault: <kind>: <reason>` / `disk_low: <reason>`: a recorder fault named this booking, or a fault
  was active during its slot;
- `recorder_offline: ...`: the recorder's heartbeat stopped before the slot ended, or its will said
  `offline` during the slot;
- `nothing_kept: ...`: the recording started but no footage was kept;
- `not_recorded: ...`: nothing else is known (e.g. the API itself was down during the slot).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.models import Booking, BookingStatus
from shared.payloads import RecorderFault, RecordingStarted
from shared.recordings.layout import joined_recording
from shared.runtime import heartbeat_path
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now

log = logging.getLogger(__name__)

HISTORY = 256
"""Recorder faults and availability changes remembered (bounded: any client may publish them)."""
HEARTBEAT_GAP_S = 30.0


@dataclass(frozen=True)
class _Fault:
    at: datetime
    kind: str
    reason: str
    active: bool
    booking_id: str | None


def _hhmm(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S UTC")


class RecorderWatch:
    """What the API hears about the recorder, to say why a slot went unrecorded. Handlers run on paho's
    thread; `reason_for` on the sweeper's."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self._faults: deque[_Fault] = deque(maxlen=HISTORY)
        self._availability: deque[tuple[datetime, str]] = deque(maxlen=HISTORY)
        self._started: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def observe(self, topic: str, message: object, retained: bool) -> None:
        """A message the /events relay has validated (EventHub listener): no second subscription needed."""
        if isinstance(message, RecorderFault):
            self.on_fault(topic, message)
        elif isinstance(message, RecordingStarted):
            self.on_started(topic, message)
        elif isinstance(message, str) and topic.endswith("/recorder/availability"):
            self.on_availability(topic, message.encode(), retained)

    def on_fault(self, _topic: str, fault: RecorderFault) -> None:
        if fault.camera_id != self.settings.camera_id:
            return
        with self._lock:
            self._faults.append(_Fault(fault.sent_at, fault.kind, fault.reason[:200], fault.active,
                                       fault.booking_id))

    def on_started(self, _topic: str, event: RecordingStarted) -> None:
        if event.camera_id != self.settings.camera_id:
            return
        with self._lock:
            self._started[event.booking_id] = event.first_frame_at
            while len(self._started) > HISTORY:
                self._started.pop(next(iter(self._started)))

    def on_availability(self, _topic: str, payload: bytes, retained: bool) -> None:
        """The recorder's will and its `online` (retained, as published); a plain message is nobody's will."""
        state = payload.decode("utf-8", errors="replace").strip()
        if retained and state in ("online", "offline"):
            with self._lock:
                self._availability.append((self.clock(), state))

    # ---- judging ---------------------------------------------------------------------------------

    @staticmethod
    def _fault_during(faults: list[_Fault], start: datetime, end: datetime) -> _Fault | None:
        """The first fault active at some moment of [start, end]."""
        active: dict[str, _Fault] = {}
        for fault in sorted(faults, key=lambda f: f.at):
            if fault.at > end:
                break
            if fault.at >= start and (fault.active or fault.kind in active):
                return fault if fault.active else active[fault.kind]  # raised in the slot, or cleared in it
            if fault.active:
                active[fault.kind] = fault
            else:
                active.pop(fault.kind, None)
        return next(iter(active.values()), None)  # raised before the slot, still active at its end

    @staticmethod
    def _offline_during(changes: list[tuple[datetime, str]], start: datetime, end: datetime) -> bool:
        state = None
        for at, said in changes:
            if at > end:
                break
            if at >= start and said == "offline":
                return True
            state = said
        return state == "offline"

    def _heartbeat_stopped_before(self, end: datetime) -> datetime | None:
        """When the recorder last beat, if that was well before the slot's end (it was not running then)."""
        try:
            at = datetime.fromtimestamp(float(json.loads(heartbeat_path(self.settings, "recorder").read_text())
                                              ["at"]), UTC)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return at if at < end - timedelta(seconds=HEARTBEAT_GAP_S) else None

    def reason_for(self, booking: Booking) -> str:
        with self._lock:
            faults, changes = list(self._faults), list(self._availability)
            started = self._started.get(booking.id)
        start = booking.start_time - timedelta(seconds=self.settings.camera_warmup_s)
        own = [f for f in faults if f.booking_id == booking.id and f.active]
        fault = own[-1] if own else None
        if fault is None:
            stopped = self._heartbeat_stopped_before(booking.end_time)
            if stopped is not None:
                return f"recorder_offline: the recorder's last heartbeat was at {_hhmm(stopped)}"
            if self._offline_during(changes, start, booking.end_time):
                return "recorder_offline: the recorder was offline during the slot"
            fault = self._fault_during(faults, start, booking.end_time)
        if fault is not None:
            prefix = "disk_low" if fault.kind == "disk_low" else f"camera_fault: {fault.kind}"
            return f"{prefix}: {fault.reason}"
        if started is not None:
            return f"nothing_kept: recording started at {_hhmm(started)} but no footage was kept"
        return "not_recorded: nothing was recorded, and no recorder fault or outage was reported"


class MissedSweeper:
    """Marks missed bookings every `every_s`; `on_marked(camera_id)` republishes the schedule."""

    def __init__(self, settings: Settings, store: Store, watch: RecorderWatch,
                 on_marked: Callable[[str], None], clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.watch = watch
        self.on_marked = on_marked
        self.clock = clock
        self.grace = timedelta(seconds=settings.booking_missed_after_s)
        self.every_s = min(30.0, max(0.5, settings.booking_missed_after_s / 4))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def recorded_here(self, booking_id: str) -> bool:
        raw = self.settings.raw_dir
        return joined_recording(raw, booking_id).exists() or (raw / booking_id).is_dir()

    def sweep(self) -> list[Booking]:
        cutoff = self.clock() - self.grace
        camera_id = self.settings.camera_id
        due = [b for b in self.store.list_bookings(camera_id=camera_id, status=BookingStatus.confirmed,
                                                   starts_before=cutoff) if b.end_time <= cutoff]
        marked = []
        for booking in due:
            if self.recorded_here(booking.id):
                continue  # footage exists: the recorder finalises it (completed), however late
            reason = self.watch.reason_for(booking)
            after = self.store.advance_booking_status(booking.id, BookingStatus.missed, reason=reason)
            if after is not None and after.status == BookingStatus.missed:
                log.warning("booking %s missed (%s)", booking.id, reason)
                marked.append(after)
        if marked:
            self.on_marked(camera_id)
        return marked

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="missed-bookings", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # a store hiccup: the next round tries again
                log.exception("checking for missed bookings failed")
            self._stop.wait(self.every_s)
