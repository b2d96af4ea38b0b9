"""Auth (device token, optional Supabase user JWTs), CORS and request body limits."""

from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from services.api.main import create_app
from tests.api.conftest import AUTH, booking_body, seed_video

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"


def _user_token(sub: str, *, secret: str = JWT_SECRET, exp_in: float = 300, aud: str = "authenticated",
                alg: str = "HS256") -> str:
    now = int(time.time())
    claims = {"sub": sub, "aud": aud, "role": "authenticated", "iat": now, "exp": now + int(exp_in)}
    return jwt.encode(claims, secret, algorithm=alg)


@pytest.fixture
def jwt_client(make_settings):
    with TestClient(create_app(make_settings(supabase_jwt_secret=JWT_SECRET))) as c:
        yield c


def test_a_user_token_reads_only_its_own_data(jwt_client, settings, tmp_path):
    client = jwt_client
    # make_settings was called again by jwt_client; both share tmp_path's data dir and camera.
    client.post("/bookings", json=[booking_body("mine", 3600), booking_body("theirs", 7200, user_id="u2")],
                headers=AUTH)
    mine, _ = seed_video(settings, tmp_path, booking_id="mine", user_id="u1")
    theirs, _ = seed_video(settings, tmp_path, booking_id="theirs", user_id="u2")
    user = {"Authorization": f"Bearer {_user_token('u1')}"}

    assert [b["id"] for b in client.get("/bookings", headers=user).json()] == ["mine"]
    assert [b["id"] for b in client.get("/bookings", params={"user_id": "u1"}, headers=user).json()] == ["mine"]
    assert client.get("/bookings", params={"user_id": "u2"}, headers=user).status_code == 403
    assert client.get("/bookings/mine", headers=user).status_code == 200
    assert client.get("/bookings/theirs", headers=user).status_code == 404
    assert [v["id"] for v in client.get("/videos", headers=user).json()] == [mine.id]
    assert client.get(f"/videos/{theirs.id}", headers=user).status_code == 404
    assert client.get(f"/videos/{mine.id}/download", headers=user).status_code == 200
    assert client.get(f"/videos/{theirs.id}/download", headers=user).status_code == 404
    assert client.get(f"/videos/{mine.id}/thumbnail", params={"token": _user_token("u1")}).status_code == 200
    assert client.get("/users/u1/settings", headers=user).status_code == 200
    assert client.get("/users/u2/settings", headers=user).status_code == 404
    # Reads only: every write and the device-wide endpoints still need the device token.
    assert client.post("/bookings", json=booking_body("new", 20000), headers=user).status_code == 401
    assert client.delete("/bookings/mine", headers=user).status_code == 401
    assert client.post(f"/videos/{mine.id}/share", headers=user).status_code == 401
    assert client.get("/status", headers=user).status_code == 401
    assert client.get("/events", params={"token": _user_token("u1")}).status_code == 401
    # The device token still sees everything.
    assert len(client.get("/bookings", headers=AUTH).json()) == 2


@pytest.mark.parametrize("token", [
    _user_token("u1", exp_in=-120),                      # expired (beyond the 30 s leeway)
    _user_token("u1", secret="another-secret-of-at-least-32-characters!"),
    _user_token("u1", aud="anon"),
    _user_token("../u1"),                                 # sub is not a safe id
    jwt.encode({"sub": "u1", "aud": "authenticated"}, JWT_SECRET, algorithm="HS256"),  # no exp
    jwt.encode({"sub": "u1", "aud": "authenticated", "exp": int(time.time()) + 60}, None, algorithm="none"),
    "not.a.jwt",
])
def test_bad_user_tokens_are_refused(jwt_client, token):
    assert jwt_client.get("/bookings", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# What README's Auth paragraph lists as served without a token; any other path answering must fail here.
OPEN_OPERATIONS = {("GET", "/"), ("GET", "/health"), ("GET", "/share/{token}"), ("GET", "/share/{token}/video")}
OPEN_OUTSIDE_SCHEMA = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static"}


def test_only_the_documented_paths_answer_without_a_token(app, client):
    spec = client.get("/openapi.json").json()
    open_operations = set()
    for path, operations in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path).replace("sponsor_logos/x", "sponsor_logos/0")
        for method, operation in operations.items():
            status = client.request(method.upper(), url).status_code
            if status != 401:
                open_operations.add((method.upper(), path))
            assert (status != 401) == ("security" not in operation), (method, path, status)  # /docs shows a lock
    assert open_operations == OPEN_OPERATIONS
    # Routes outside the schema (FastAPI's docs, the static mount) are never behind the token.
    outside = {r.path for r in app.routes if isinstance(r, Route | Mount) and not isinstance(r, APIRoute)}
    assert outside == OPEN_OUTSIDE_SCHEMA
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static/dashboard.js"):
        assert client.get(path).status_code == 200, path

def test_user_tokens_are_ignored_without_a_jwt_secret(client):
    assert client.get("/bookings", headers={"Authorization": f"Bearer {_user_token('u1')}"}).status_code == 401


def test_cors_is_closed_by_default(client):
    pre = client.options("/bookings", headers={"Origin": "https://venue.example",
                                                "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    got = client.get("/bookings", headers={**AUTH, "Origin": "https://venue.example"})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


def test_cors_allows_only_configured_origins(make_settings):
    with TestClient(create_app(make_settings(cors_origins="https://venue.example, https://admin.example"))) as c:
        pre = c.options("/bookings", headers={"Origin": "https://venue.example", "Access-Control-Request-Method":
                                              "POST", "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://venue.example"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        got = c.get("/bookings", headers={**AUTH, "Origin": "https://admin.example"})
        assert got.headers["access-control-allow-origin"] == "https://admin.example"
        other = c.options("/bookings", headers={"Origin": "https://evil.example", "Access-Control-Request-Method":
                                                "GET"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_body_limit_by_content_length(client):
    big = b'{"id": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    r = client.post("/bookings", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than 1 MB" in r.json()["detail"]


def test_body_limit_without_content_length(client):
    def chunks():
        yield b'{"id": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    r = client.post("/bookings", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than 1 MB" in r.json()["detail"]
    small = client.post("/bookings", content=iter([b"[]"]), headers={**AUTH, "Content-Type": "application/json"})
    assert small.status_code == 422  # under the limit, the body reaches validation


def test_streamed_body_limit_on_a_real_server(live_api):
    server = live_api(max_request_body_mb=0.25)
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(16):  # 1 MB in 64 KiB chunks, chunked transfer encoding
            sent += 65536
            yield b"x" * 65536

    with httpx.Client(base_url=server.url, timeout=20) as http:
        r = http.put("/bookings/b1", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"


def test_the_operator_endpoints_take_the_device_token_only(jwt_client):
    """Outbox replay/drop and service commands act on the whole device: a Supabase user's token never reaches them."""
    user = {"Authorization": f"Bearer {_user_token('u1')}"}
    for method, path in [("GET", "/outbox"), ("GET", "/outbox/1"), ("POST", "/outbox/1/replay"),
                         ("DELETE", "/outbox/1"), ("GET", "/device/services"), ("POST", "/device/status/snapshot"),
                         ("POST", "/device/services/worker/restart")]:
        assert jwt_client.request(method, path, headers=user).status_code == 401, (method, path)
    assert jwt_client.get("/outbox", headers=AUTH).status_code == 404  # no cloud here, but the token was taken
