"""GET /events relays the device's MQTT events as Server-Sent Events, through a real broker and server."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator

import httpx
import paho.mqtt.client as mqtt
import pytest

from services.api.events import EventHub
from shared.payloads import RecordingStarted, StatusSnapshot
from shared.timeutil import utc_now
from tests.conftest import TOKEN


class SseReader:
    """Reads an SSE stream on a thread, so the test can wait for events with a timeout."""

    def __init__(self, url: str, params: dict[str, str]) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.comments: queue.Queue[str] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._thread = threading.Thread(target=self._run, args=(url, params), daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "no response from /events"

    def _run(self, url: str, params: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, params=params) as response:
                self.status = response.status_code
                self.headers = response.headers
                self._ready.set()
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments.put(line)
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif line == "" and data:
                        self.events.put(json.loads("\n".join(data)))
                        data = []
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()
            self.events.put({"topic": "<closed>", "payload": None})

    def wait_for(self, predicate, timeout: float = 15.0) -> dict:
        seen = []
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    event = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                seen.append(event["topic"])
                if predicate(event):
                    return event
                if event["topic"] == "<closed>":
                    break
        finally:
            timer.cancel()
        raise AssertionError(f"no matching event within {timeout}s; saw {seen}")

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def sse() -> Iterator:
    readers: list[SseReader] = []

    def _open(url: str, **params: str) -> SseReader:
        reader = SseReader(url, params)
        readers.append(reader)
        return reader

    yield _open
    for reader in readers:
        reader.close()


def _publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_events_relay_mqtt_to_sse(live_api, sse, running_broker, camera_id):
    server = live_api()
    stream = sse(f"{server.url}/events", token=TOKEN)
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    # The API's own `online` (retained, on its own subtree) proves its subscription is in place.
    online = stream.wait_for(lambda e: e["topic"] == f"ezrec/{camera_id}/api/availability")
    assert online["payload"] == "online"

    started = RecordingStarted(booking_id="b1", camera_id=camera_id, first_frame_at=utc_now())
    _publish(running_broker.port, f"ezrec/{camera_id}/recording/started", started.model_dump_json().encode())
    event = stream.wait_for(lambda e: e["topic"].endswith("/recording/started"))
    assert event["payload"]["booking_id"] == "b1" and event["payload"]["v"] == 1

    _publish(running_broker.port, "ezrec/media/updated", b'{"v":1,"user_id":"u1","kind":"logo","path":null}')
    assert stream.wait_for(lambda e: e["topic"] == "ezrec/media/updated")["payload"]["user_id"] == "u1"
    # Another camera's events are not this device's.
    _publish(running_broker.port, "ezrec/othercam/recording/started", b"{}")
    _publish(running_broker.port, f"ezrec/{camera_id}/video/progress", b'{"booking_id":"b1","percent":50,"fps":9}')
    after = stream.wait_for(lambda e: e["topic"] != f"ezrec/{camera_id}/bookings")
    assert after["topic"] == f"ezrec/{camera_id}/video/progress"


def test_a_new_client_gets_the_current_retained_state_first(live_api, sse, running_broker, camera_id):
    server = live_api()
    first = sse(f"{server.url}/events", token=TOKEN)
    first.wait_for(lambda e: e["topic"] == f"ezrec/{camera_id}/api/availability")
    _publish(running_broker.port, f"ezrec/{camera_id}/status", _status(camera_id, 12.5), retain=True)
    first.wait_for(lambda e: e["topic"] == f"ezrec/{camera_id}/status")
    late = sse(f"{server.url}/events", token=TOKEN)
    replay = [late.events.get(timeout=5) for _ in range(3)]  # before anything new is published
    assert {e["topic"] for e in replay} == {f"ezrec/{camera_id}/{t}" for t in ("status", "bookings",
                                                                                  "api/availability")}
    assert next(e for e in replay if e["topic"].endswith("/status"))["payload"]["cpu_percent"] == 12.5


def test_events_need_the_device_token(live_api):
    server = live_api()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/events").status_code == 401
        assert http.get("/events", params={"token": "wrong"}).status_code == 401
        with http.stream("GET", "/events", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status_code == 200


def test_heartbeat_comments_keep_the_stream_open(live_api, sse):
    server = live_api()
    server.app.state.ezrec.hub.heartbeat_s = 0.2
    stream = sse(f"{server.url}/events", token=TOKEN)
    assert stream.comments.get(timeout=10) == ": keep-alive"


def test_hub_disconnects_a_client_that_falls_behind():
    async def scenario() -> tuple[list[str], list[str], int]:
        hub = EventHub("cam", queue_size=3, heartbeat_s=30)
        hub.attach(asyncio.get_running_loop())
        slow, fast = hub.stream(), hub.stream()
        assert await anext(slow) == "retry: 3000\n\n" and await anext(fast) == "retry: 3000\n\n"
        fast_got: list[str] = []
        reader = asyncio.ensure_future(_drain(fast, fast_got))
        await asyncio.sleep(0)
        assert hub.client_count == 2
        for i in range(6):
            hub.on_mqtt("ezrec/cam/video/progress", b'{"booking_id": "b%d", "percent": 1, "fps": 1}' % i, False)
            await asyncio.sleep(0.01)
        slow_got = [frame async for frame in slow]  # its queue overflowed: ended after what it had
        hub.close()
        await asyncio.wait_for(reader, 5)
        return slow_got, fast_got, hub.client_count

    slow_got, fast_got, remaining = asyncio.run(scenario())
    assert len(slow_got) == 2 and all("progress" in f for f in slow_got)  # 3 queued, one dropped for the end
    assert len(fast_got) == 6  # a client that keeps up gets everything
    assert remaining == 0


async def _drain(stream, into: list[str]) -> None:
    async for frame in stream:
        into.append(frame)


def _status(camera_id: str, cpu: float) -> bytes:
    return StatusSnapshot(camera_id=camera_id, collected_at=utc_now(), cpu_percent=cpu, load_1m=0.1,
                          memory_percent=10, memory_used_mb=100, disk_total_gb=10, disk_free_gb=5,
                          uptime_s=60).model_dump_json().encode()


def test_only_ezrec_payloads_are_relayed_and_only_retained_state_is_replayed(live_api, sse, running_broker,
                                                                               camera_id):
    """40 one-megabyte junk publishes once grew the API by 46 MB and sent 40 MB to every new dashboard."""
    server = live_api()
    hub = server.app.state.ezrec.hub
    first = sse(f"{server.url}/events", token=TOKEN)
    first.wait_for(lambda e: e["topic"] == f"ezrec/{camera_id}/api/availability")
    base, junk = f"ezrec/{camera_id}", b"\xff" * (1024 * 1024)
    _publish(running_broker.port, f"{base}/status", _status(camera_id, 12.5), retain=True)  # the real state
    for i in range(20):  # junk on look-alike topics, retained or not
        _publish(running_broker.port, f"{base}/x{i}/status", junk, retain=i % 2 == 0)
        _publish(running_broker.port, f"{base}/x{i}/availability", b"online", retain=True)
    _publish(running_broker.port, f"{base}/status", junk)  # not JSON
    _publish(running_broker.port, f"{base}/status", b"null")  # JSON, not a snapshot
    _publish(running_broker.port, f"{base}/recording/started", b'{"v":1,"booking_id":"b1"}')  # incomplete
    _publish(running_broker.port, f"{base}/status", _status(camera_id, 99.0))  # valid but NOT retained
    _publish(running_broker.port, f"{base}/status", _status("othercam", 50.0), retain=True)  # not this camera
    _publish(running_broker.port, f"{base}/video/progress", b'{"v":1,"booking_id":"b1","percent":42,"fps":30}')
    seen: list[dict] = []
    last = first.wait_for(lambda e: seen.append(e) or e["topic"] == f"{base}/video/progress")  # published last
    assert last["payload"]["percent"] == 42
    live = [e for e in seen if e["topic"] == f"{base}/status"]
    assert [e["payload"]["cpu_percent"] for e in live] == [12.5, 99.0]  # the valid ones only, live
    assert not [e for e in seen if "/x" in e["topic"]]

    late = sse(f"{server.url}/events", token=TOKEN)
    replay = [late.events.get(timeout=5) for _ in range(3)]
    assert {e["topic"] for e in replay} == {f"{base}/status", f"{base}/bookings", f"{base}/api/availability"}
    assert next(e for e in replay if e["topic"].endswith("/status"))["payload"]["cpu_percent"] == 12.5
    with pytest.raises(queue.Empty):
        late.events.get(timeout=1)  # nothing else was kept for replay
    assert hub.retained_bytes < 16 * 1024


def test_relay_caps_message_size_and_each_clients_backlog_in_bytes(camera_id):
    from services.api.events import MAX_EVENT_BYTES

    async def scenario() -> tuple[list[str], int]:
        hub = EventHub(camera_id, queue_size=256, heartbeat_s=30, queue_bytes=8 * 1024)
        hub.attach(asyncio.get_running_loop())
        slow = hub.stream()
        assert await anext(slow) == "retry: 3000\n\n"
        failed = {"v": 1, "booking_id": "b1", "element": "encoder", "reason": "x" * MAX_EVENT_BYTES}
        hub.on_mqtt(f"ezrec/{camera_id}/video/failed", json.dumps(failed).encode(), False)  # too big: dropped
        await asyncio.sleep(0.01)
        assert hub.dropped == 1
        for i in range(40):  # ~300 bytes each: the 8 KiB budget is gone after ~27
            progress = {"v": 1, "booking_id": f"b{i}", "percent": 1, "fps": 1, "worker": "w" * 150}
            hub.on_mqtt(f"ezrec/{camera_id}/video/progress", json.dumps(progress).encode(), False)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        got = [frame async for frame in slow]
        return got, hub.client_count

    got, remaining = asyncio.run(scenario())
    assert 20 < len(got) < 40 and all("progress" in f for f in got)  # cut off by bytes, not by count
    assert remaining == 0
