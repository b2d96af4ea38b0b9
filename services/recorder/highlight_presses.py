"""Highlight presses -> clip spans of the booking being recorded, on `highlight/clip` (or a refusal).

The recorder answers because only it knows, at the moment of the press, what the camera is recording. It never
touches the recording itself: a press costs a dictionary update and one durable publish, so any number of them
leave the booking's segments, timing and video as they are. The worker cuts the clip (video_worker/highlights/).

Each press asks for the last HIGHLIGHT_SECONDS up to it plus HIGHLIGHT_AFTER_S after it, within the booking. A
press inside a clip's span (before its end) extends that clip to the new press's end instead of making a second
clip: the same clip id is published again with the later end and one more press.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from shared.atomic import write_text_atomic
from shared.bus import MqttBus
from shared.payloads import (
    DeadLetter,
    HighlightClip,
    HighlightRefused,
    HighlightRequest,
    ScheduledBooking,
    ScheduleSnapshot,
)
from shared.recordings.layout import BookingDir, BookingMeta
from shared.settings import Settings
from shared.timeutil import utc_now
from shared.topics import DEADLETTER

log = logging.getLogger(__name__)

NOTE_NAME = ".highlight.json"
"""Beside the booking's segments: its latest clip (hidden, so nothing counting segments sees it)."""
SENT_AT_TRUST_S = 10.0
"""A request's own `sent_at` is taken as the moment of the press when it is at most this old (clocks agree on a
LAN; a request queued at the broker while the recorder restarted is judged when it arrives)."""


@dataclass
class _Open:
    clip: HighlightClip
    request_ids: list[str] = field(default_factory=list)


class HighlightDesk:
    def __init__(self, settings: Settings, bus: MqttBus, recording_now: Callable[[], str | None],
                 schedule: Callable[[], ScheduleSnapshot | None] = lambda: None) -> None:
        self.settings = settings
        self.bus = bus
        self._recording_now = recording_now
        self._schedule = schedule
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}  # booking id -> its latest clip

    # ---- inputs ----------------------------------------------------------------------------------

    def on_mqtt(self, topic: str, payload: bytes, retained: bool) -> None:
        """paho's thread. Empty or `{}` is a plain press. A retained request is ignored: it would fire again on
        every reconnect; junk is dead-lettered like any malformed payload."""
        if retained:
            log.warning("ignoring a retained highlight request on %s (publish it without retain)", topic)
            return
        try:
            request = HighlightRequest.model_validate_json(payload.strip() or b"{}")
        except ValidationError as exc:
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            self.bus.publish(DEADLETTER, DeadLetter(topic=topic, service="recorder", error=f"invalid HighlightRequest:"
                                                    f" {error}", payload=payload[:4096].decode("utf-8", "replace")))
            return
        self.press(request)

    def on_button(self) -> None:
        """The GPIO button's thread (gpiozero)."""
        self.press(HighlightRequest(source="button"))

    # ---- judging ---------------------------------------------------------------------------------

    def press(self, request: HighlightRequest, now: datetime | None = None) -> HighlightClip | HighlightRefused:
        now = now or utc_now()
        age = (now - request.sent_at).total_seconds()
        at = request.sent_at if 0 <= age <= SENT_AT_TRUST_S else now
        booking_id = self._recording_now()
        meta = self._booking(booking_id) if booking_id else None
        if booking_id is None or meta is None or not (meta.start_time <= at <= meta.end_time):
            return self._refuse(request, "not_recording", "no recording is under way on this camera; press during a"
                                                          " booked slot", None)
        if request.booking_id is not None and request.booking_id != booking_id:
            return self._refuse(request, "other_booking", f"booking {request.booking_id} is not the one being "
                                                          "recorded now", request.booking_id)
        before = timedelta(seconds=request.seconds or self.settings.highlight_seconds)
        after = timedelta(seconds=self.settings.highlight_after_s if request.after_s is None else request.after_s)
        start, end = max(at - before, meta.start_time), min(at + after, meta.end_time)
        with self._lock:
            current = self._open.get(booking_id) or self._load(booking_id)
            if current is not None and at <= current.clip.end_at:
                ids = (current.clip.request_ids + [request.request_id] if request.request_id
                       else current.clip.request_ids)[-100:]
                clip = current.clip.model_copy(update={
                    "end_at": max(current.clip.end_at, end), "presses": current.clip.presses + 1,
                    "request_ids": ids, "sent_at": now})
            else:
                clip = HighlightClip(clip_id=_clip_id(at), booking_id=booking_id, camera_id=self.settings.camera_id,
                                     user_id=meta.user_id, start_at=start, end_at=end, presses=1,
                                     request_ids=[request.request_id] if request.request_id else [])
            self._open = {booking_id: _Open(clip)}  # only the booking being recorded can be extended
            self._save(clip)
            self.bus.publish(self.bus.topics.highlight_clip, clip)
        log.info("highlight %s of booking %s (%s): %s .. %s, press %d", clip.clip_id, booking_id, request.source,
                 clip.start_at.isoformat(), clip.end_at.isoformat(), clip.presses)
        return clip

    def _load(self, booking_id: str) -> _Open | None:
        """The booking's latest clip as a recorder that restarted mid-booking left it, so a press in its span still
        extends it (the note lives beside the segments and goes with them)."""
        try:
            return _Open(HighlightClip.model_validate_json(self._note(booking_id).read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.warning("highlight note of booking %s unreadable (%s); the next press makes a new clip", booking_id,
                        exc)
            return None

    def _save(self, clip: HighlightClip) -> None:
        try:
            write_text_atomic(self._note(clip.booking_id), clip.model_dump_json())
        except OSError as exc:  # a note that cannot be kept costs an extension after a restart, nothing more
            log.warning("highlight note of booking %s not kept: %s", clip.booking_id, exc)

    def _note(self, booking_id: str) -> Path:
        return BookingDir(self.settings.raw_dir, booking_id).path / NOTE_NAME

    def _booking(self, booking_id: str) -> ScheduledBooking | BookingMeta | None:
        """The booking as the schedule has it now (its end may have moved since it started), else as the recorder
        noted it beside its segments."""
        snapshot = self._schedule()
        found = next((b for b in snapshot.bookings if b.id == booking_id), None) if snapshot is not None else None
        return found or BookingDir(self.settings.raw_dir, booking_id).read_meta()

    def _refuse(self, request: HighlightRequest, code: str, reason: str,
                booking_id: str | None) -> HighlightRefused:
        refusal = HighlightRefused(camera_id=self.settings.camera_id, code=code, reason=reason,  # type: ignore[arg-type]
                                   booking_id=booking_id, request_id=request.request_id,
                                   source=request.source)
        self.bus.publish(self.bus.topics.highlight_refused, refusal)
        log.info("highlight press refused (%s): %s", request.source, reason)
        return refusal


def _clip_id(at: datetime) -> str:
    """Named after its first press (UTC, ms): readable in a file listing, unique within a booking."""
    return "h" + at.strftime("%Y%m%dT%H%M%S") + f"{at.microsecond // 1000:03d}"
