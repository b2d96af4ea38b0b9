"""Hostile input: junk on every MQTT topic a service subscribes to, and requests an attacker or a broken client
would send to the API. Each returns what it saw; anything other than a clear refusal is a finding."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import paho.mqtt.client as mqtt

from tests.conftest import TOKEN

MB = 1024 * 1024


def subscribed_topics(camera_id: str) -> list[str]:
    """Every topic a service subscribes to (docs/mqtt.md, "Subscriptions"), the wildcards made concrete."""
    base = f"ezrec/{camera_id}"
    return [f"{base}/bookings", f"{base}/recording/started", f"{base}/recording/segment",
            f"{base}/recording/finished", f"{base}/video/failed", f"{base}/recorder/fault", "ezrec/media/updated",
            "ezrec/deadletter", "homeassistant/status", f"{base}/recorder/availability",
            *(f"{base}/{service}/command" for service in ("api", "recorder", "worker", "status"))]


def junk_payloads(camera_id: str) -> list[tuple[str, bytes]]:
    """Malformed (not JSON, wrong shape, wrong types, naive times, hostile ids, deep nesting) and oversized."""
    nested = b"[" * 20000 + b"]" * 20000
    return [
        ("empty", b""),
        ("binary", bytes(range(256)) * 4),
        ("not-json", b"{this is not json"),
        ("wrong-shape", b"[1, 2, 3]"),
        ("no-version", json.dumps({"camera_id": camera_id}).encode()),
        ("wrong-types", json.dumps({"v": "one", "camera_id": 7, "revision": "x", "bookings": "all",
                                    "booking_id": ["a"], "sent_at": 12}).encode()),
        ("naive-time", json.dumps({"v": 1, "sent_at": "2030-01-01T10:00:00", "camera_id": camera_id,
                                   "booking_id": "b1", "user_id": "u1",
                                   "started_at": "2030-01-01T10:00:00"}).encode()),
        ("traversal", json.dumps({"v": 1, "sent_at": datetime.now(UTC).isoformat(), "camera_id": camera_id,
                                  "booking_id": "../../etc/passwd", "user_id": "../..",
                                  "file": "../../../etc/passwd", "path": "/etc/shadow", "kind": "logo"}).encode()),
        ("huge-number", b'{"v": 1, "revision": ' + b"9" * 5000 + b"}"),
        ("deep", nested),
        ("oversized", b'{"v": 1, "pad": "' + b"x" * (2 * MB) + b'"}'),
    ]


def mqtt_junk(port: int, camera_id: str) -> dict[str, int]:
    """Publish every junk payload on every subscribed topic (QoS 1, not retained: the retained schedule stays
    the API's). Returns how many were sent."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-junk-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    try:
        for topic in subscribed_topics(camera_id):
            for _, payload in junk_payloads(camera_id):
                client.publish(topic, payload, qos=1).wait_for_publish(10)
                sent += 1
    finally:
        client.disconnect()
        client.loop_stop()
    return {"mqtt_junk_sent": sent}


def _expired_jwt(secret: str) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"sub": "u-intro", "aud": "authenticated", "role": "authenticated",
                       "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}, secret, algorithm="HS256")


def api_hostile(base: str, jwt_secret: str) -> dict[str, list]:
    """Each request with what it must answer. Returns {"ok": [...], "bad": [(what, status or error)]}; a 5xx
    or an answer accepting the request is bad. A request that finds the API down (a kill in flight) is skipped,
    not judged."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    now = datetime.now(UTC)
    naive = {"id": "hostile-naive", "user_id": "u1", "start_time": (now + timedelta(hours=5)).strftime(
        "%Y-%m-%dT%H:%M:%S"), "end_time": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S")}
    cases: list[tuple[str, str, str, dict, dict, tuple[int, ...]]] = [
        ("no token", "GET", "/bookings", {}, {}, (401,)),
        ("bad token", "GET", "/bookings", {"Authorization": "Bearer nope"}, {}, (401,)),
        ("token not bearer", "GET", "/videos", {"Authorization": f"Basic {TOKEN}"}, {}, (401,)),
        ("expired jwt", "GET", "/bookings", {"Authorization": f"Bearer {_expired_jwt(jwt_secret)}"}, {}, (401,)),
        ("forged jwt", "GET", "/bookings", {"Authorization": f"Bearer {_expired_jwt('wrong-secret' * 4)}"}, {},
         (401,)),
        ("traversal booking", "GET", "/bookings/..%2F..%2Fetc%2Fpasswd", good, {}, (404, 422)),
        ("traversal video", "GET", "/videos/..%2F..%2Fstate%2Fjobs.db/download", good, {}, (404, 422)),
        ("traversal delete", "DELETE", "/bookings/..%2Fs1", good, {}, (404, 422)),
        ("traversal media", "PUT", "/users/..%2F..%2Fetc/media/logo", good,
         {"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n")}}, (404, 422)),
        ("naive times", "POST", "/bookings", good, {"json": naive}, (422,)),
        ("traversal id", "POST", "/bookings", good, {"json": {**naive, "id": "../../x",
                                                              "start_time": naive["start_time"] + "Z",
                                                              "end_time": naive["end_time"] + "Z"}}, (422,)),
        ("20 MB body", "POST", "/bookings", good, {"content": b"[" + b" " * (20 * MB) + b"]",
                                                   "headers": {"content-type": "application/json"}}, (413,)),
        ("20 MB media", "PUT", "/users/u-hostile/media/logo", good,
         {"files": {"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (20 * MB))}}, (413, 415, 422)),
        ("not json", "POST", "/bookings", good, {"content": b"{nope", "headers": {"content-type": "application/json"}},
         (400, 422)),
    ]
    ok: list[str] = []
    bad: list[tuple[str, object]] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for what, method, path, headers, extra, expected in cases:
            extra = dict(extra)
            hdrs = {**headers, **extra.pop("headers", {})}
            try:
                answer = client.request(method, path, headers=hdrs, **extra)
            except httpx.TransportError:
                continue  # the API is down (a kill in flight): nothing to judge
            (ok if answer.status_code in expected else bad).append(
                what if answer.status_code in expected else (what, answer.status_code))
    slow = slow_body(base)
    (ok if slow is None else bad).append("slow body" if slow is None else ("slow body", slow))
    return {"ok": ok, "bad": bad}


def slow_body(base: str, seconds: float = 8.0) -> str | None:
    """A client trickling its body for `seconds` must not hold up anybody else: /health answers meanwhile.
    Returns None when fine, else what went wrong."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"id": "slow-1", "user_id": "u1", "start_time": "2035-01-01T10:00:00Z",
                       "end_time": "2035-01-01T10:30:00Z"}).encode()
    problem: list[str] = []

    def trickle() -> None:
        try:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(f"POST /bookings HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(body) + 1000}\r\n\r\n".encode())
                step = seconds / len(body)
                for i in range(len(body)):
                    sock.sendall(body[i:i + 1])
                    time.sleep(step)
                sock.shutdown(socket.SHUT_WR)  # never sends the promised rest
                sock.settimeout(30)
                sock.recv(4096)
        except OSError:
            pass  # the server hung up on it: fine

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(1)
    try:
        if httpx.get(f"{base}/health", timeout=3).status_code != 200:
            problem.append("/health did not answer 200 during a slow body")
    except httpx.ConnectError:
        pass  # nobody listening: the API was killed meanwhile (a kill_api fault), not held up; nothing to judge
    except httpx.TransportError as exc:
        problem.append(f"/health held up by a slow body: {exc!r}")
    thread.join(seconds + 40)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
            if client.get("/bookings/slow-1").status_code != 404:
                problem.append("a truncated slow body made a booking")
    except httpx.TransportError:
        pass
    return "; ".join(problem) or None
