"""GET /events: the device's MQTT events relayed to browsers as Server-Sent Events.

paho delivers on its own thread; each message is formatted once and handed to the event loop,
which copies it into every connected client's bounded queue. A client too slow to keep up is
disconnected (its browser's EventSource reconnects and reloads), so one stuck tab never grows memory.
The last message of each retained topic (schedule, status, availability) is replayed to a new client
first, so a fresh page shows the current state without waiting for the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
HEARTBEAT_S = 15.0
_RETAINED_SUFFIXES = ("/bookings", "/status", "/availability")


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


def format_event(event_id: int, topic: str, payload: bytes) -> str:
    """One SSE frame: `id`, then `data` = {"topic", "payload"} (JSON payloads embedded as JSON)."""
    try:
        body: object = json.loads(payload)
    except ValueError:
        body = payload.decode("utf-8", errors="replace")
    data = json.dumps({"topic": topic, "payload": body}, separators=(",", ":"))
    return f"id: {event_id}\ndata: {data}\n\n"


class EventHub:
    def __init__(self, queue_size: int = QUEUE_SIZE, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self._clients: set[_Client] = set()
        self._retained: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ---- wiring ----------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    def on_mqtt(self, topic: str, payload: bytes) -> None:
        """Runs on paho's thread: format once, then let the event loop fan out."""
        frame = format_event(next(self._ids), topic, payload)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(self._fan_out, topic, frame)

    def _fan_out(self, topic: str, frame: str) -> None:
        if topic.endswith(_RETAINED_SUFFIXES):
            self._retained[topic] = frame
        for client in list(self._clients):
            try:
                client.queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("event client too slow (%d queued); disconnecting it", client.queue.qsize())
                self._drop(client)

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
                yield frame
        finally:
            self._clients.discard(client)
