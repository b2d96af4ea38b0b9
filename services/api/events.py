"""GET /events: the device's MQTT events relayed to browsers as Server-Sent Events.

paho delivers on its own thread; each message is checked and formatted once there and handed to the
event loop, which copies it into every connected client's bounded queue. Only EZREC payloads pass: a
topic this device publishes, a payload that validates against that topic's model (re-serialized, so
unknown fields never reach a browser), at most MAX_EVENT_BYTES (the schedule: MAX_SCHEDULE_BYTES).
Anything else is dropped here and counted, never stored or sent.

A new client first gets the retained state: the last message *published retained* on the schedule, the
status and each known service's availability topic (at most 2 + 4 entries). Plain messages are never
kept for replay. A client whose queue holds more than QUEUE_SIZE events or QUEUE_BYTES is too slow and
is disconnected (its browser's EventSource reconnects and reloads), so one stuck tab never grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from shared.payloads import (
    Alert,
    CommandAck,
    HighlightClip,
    HighlightCreated,
    HighlightFailed,
    HighlightRefused,
    MediaUpdated,
    OperatorAction,
    RecorderFault,
    RecordingFinished,
    RecordingSegment,
    RecordingStarted,
    ScheduleSnapshot,
    ServiceLogs,
    StatusSnapshot,
    VideoFailed,
    VideoProcessed,
    VideoProgress,
    VideoUploaded,
)
from shared.topics import MEDIA_UPDATED, SERVICES, Topics

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
QUEUE_BYTES = 4 * 1024 * 1024
HEARTBEAT_S = 15.0
MAX_EVENT_BYTES = 64 * 1024
MAX_SCHEDULE_BYTES = 1024 * 1024  # a schedule months ahead is ~170 bytes a booking
MAX_LOGS_BYTES = 128 * 1024  # 50 records of at most 500 characters, JSON-escaped
AVAILABILITY = ("online", "offline")


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    queued_bytes: int = 0


@dataclass(frozen=True)
class Relayed:
    topic: str
    message: BaseModel | str  # the validated payload (availability: its text)
    body: object  # the JSON value sent as `payload`
    retained_slot: bool  # a topic whose retained message is replayed to new clients


Listener = Callable[[str, BaseModel | str, bool], None]


def format_event(event_id: int, topic: str, body: object) -> str:
    """One SSE frame: `id`, then `data` = {"topic", "payload"}."""
    data = json.dumps({"topic": topic, "payload": body}, separators=(",", ":"))
    return f"id: {event_id}\ndata: {data}\n\n"


class Relay:
    """Which messages a browser may see: this camera's topics, each with its payload model."""

    def __init__(self, camera_id: str) -> None:
        topics = Topics(camera_id)
        self.camera_id = camera_id
        self.models: dict[str, type[BaseModel]] = {
            topics.bookings: ScheduleSnapshot,
            topics.recording_started: RecordingStarted,
            topics.recording_segment: RecordingSegment,
            topics.recording_finished: RecordingFinished,
            topics.recorder_fault: RecorderFault,
            topics.video_progress: VideoProgress,
            topics.video_processed: VideoProcessed,
            topics.video_uploaded: VideoUploaded,
            topics.video_failed: VideoFailed,
            topics.highlight_clip: HighlightClip,
            topics.highlight_refused: HighlightRefused,
            topics.highlight_created: HighlightCreated,
            topics.highlight_failed: HighlightFailed,
            topics.status: StatusSnapshot,
            topics.alerts: Alert,
            topics.operator_action: OperatorAction,
            MEDIA_UPDATED: MediaUpdated,
            **{topics.command_ack(s): CommandAck for s in SERVICES},
        }
        self.availability = {topics.availability(s) for s in SERVICES}
        self.retained_slots = {topics.bookings, topics.status, *self.availability}
        self.limits = {topics.bookings: MAX_SCHEDULE_BYTES}
        # ezrec/<camera>/<service>/logs, or .../logs/<WORKER_ID> for a named worker
        self.logs_topic = re.compile(
            rf"^{re.escape(topics.base)}/({'|'.join(SERVICES)})/logs(?:/([A-Za-z0-9_-]{{1,48}}))?$")

    def check(self, topic: str, payload: bytes) -> Relayed | None:
        """The message as a browser gets it, or None (with the reason logged) when it is not one of ours."""
        logs = self.logs_topic.match(topic)
        if logs is not None:
            return self._check_logs(topic, payload, logs.group(1), logs.group(2))
        limit = self.limits.get(topic, MAX_EVENT_BYTES)
        if len(payload) > limit:
            log.warning("not relaying %d bytes on %s (limit %d)", len(payload), topic, limit)
            return None
        slot = topic in self.retained_slots
        if topic in self.availability:
            text = payload.decode("utf-8", errors="replace")
            if text not in AVAILABILITY:
                log.warning("not relaying availability %r on %s", text[:32], topic)
                return None
            return Relayed(topic, text, text, slot)
        model = self.models.get(topic)
        if model is None:
            log.debug("not relaying %s: not an EZREC topic", topic)
            return None
        try:
            parsed = model.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("not relaying %s: not a %s (%d errors)", topic, model.__name__, exc.error_count())
            return None
        if getattr(parsed, "camera_id", self.camera_id) != self.camera_id:
            log.warning("not relaying %s: for camera %s", topic, getattr(parsed, "camera_id", None))
            return None
        if isinstance(parsed, CommandAck) and topic != Topics(self.camera_id).command_ack(parsed.service):
            log.warning("not relaying %s: an answer of the %s service", topic, parsed.service)
            return None
        return Relayed(topic, parsed, json.loads(parsed.model_dump_json()), slot)

    def _check_logs(self, topic: str, payload: bytes, service: str, instance: str | None) -> Relayed | None:
        """A service's recent records: the payload must name the service and instance its topic names."""
        if len(payload) > MAX_LOGS_BYTES:
            log.warning("not relaying %d bytes on %s (limit %d)", len(payload), topic, MAX_LOGS_BYTES)
            return None
        try:
            parsed = ServiceLogs.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("not relaying %s: not a ServiceLogs (%d errors)", topic, exc.error_count())
            return None
        if (parsed.camera_id, parsed.service, parsed.instance) != (self.camera_id, service, instance):
            log.warning("not relaying %s: it names %s/%s/%s", topic, parsed.camera_id, parsed.service, parsed.instance)
            return None
        return Relayed(topic, parsed, json.loads(parsed.model_dump_json()), False)


class EventHub:
    def __init__(self, camera_id: str = "cam1", queue_size: int = QUEUE_SIZE, heartbeat_s: float = HEARTBEAT_S,
                 queue_bytes: int = QUEUE_BYTES) -> None:
        self.relay = Relay(camera_id)
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.heartbeat_s = heartbeat_s
        self.dropped = 0
        self.listeners: list[Listener] = []  # told of every relayed message, on paho's thread
        self._clients: set[_Client] = set()
        self._retained: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ---- wiring ----------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    def on_mqtt(self, topic: str, payload: bytes, retained: bool) -> None:
        """Runs on paho's thread: check and format once, then let the event loop fan out. `retained` is the
        flag as published (the bus subscribes with Retain As Published)."""
        relayed = self.relay.check(topic, payload)
        if relayed is None:
            self.dropped += 1
            return
        for listener in self.listeners:
            try:
                listener(topic, relayed.message, retained)
            except Exception:
                log.exception("event listener failed on %s", topic)
        frame = format_event(next(self._ids), topic, relayed.body)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(self._fan_out, topic, frame, relayed.retained_slot and retained)

    def _fan_out(self, topic: str, frame: str, keep: bool) -> None:
        if keep:
            self._retained[topic] = frame
        for client in list(self._clients):
            if client.queued_bytes + len(frame) > self.queue_bytes:
                log.warning("event client too slow (%d bytes queued); disconnecting it", client.queued_bytes)
                self._drop(client)
                continue
            try:
                client.queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("event client too slow (%d queued); disconnecting it", client.queue.qsize())
                self._drop(client)
                continue
            client.queued_bytes += len(frame)

    def _drop(self, client: _Client) -> None:
        self._clients.discard(client)
        with contextlib.suppress(asyncio.QueueEmpty):
            client.queue.get_nowait()  # make room for the end marker
        client.queue.put_nowait(None)

    def close(self) -> None:
        """Server shutdown: end every stream so uvicorn's graceful shutdown is not held open."""
        self._closed = True
        for client in list(self._clients):
            self._drop(client)

    def close_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.close)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def retained_bytes(self) -> int:
        return sum(len(frame) for frame in self._retained.values())

    # ---- streaming -------------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[str]:
        client = _Client(asyncio.Queue(self.queue_size))
        self._clients.add(client)
        try:
            yield "retry: 3000\n\n"
            for frame in list(self._retained.values()):
                yield frame
            while not self._closed:
                try:
                    frame = await asyncio.wait_for(client.queue.get(), self.heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if frame is None:
                    break
                client.queued_bytes -= len(frame)
                yield frame
        finally:
            self._clients.discard(client)
