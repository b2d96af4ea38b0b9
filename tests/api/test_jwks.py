"""Supabase projects with asymmetric signing keys: user tokens (ES256/RS256) verified with the project's
public keys from its JWKS URL, served here by a local HTTP server that can be taken away."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from services.api import auth
from services.api.main import create_app
from tests.api.conftest import booking_body

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"


class JwksServer:
    """/auth/v1/.well-known/jwks.json with whatever public keys the test publishes; counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, private_key: object, kid: str, alg: str) -> None:
        algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
        public = json.loads(algorithm.to_jwk(private_key.public_key()))
        self.keys.append({**public, "kid": kid, "alg": alg, "use": "sig"})

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "JWKS_RETRY_S", 0.0)


def _token(key: object, kid: str | None, alg: str, sub: str = "u1", exp_in: float = 300) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode({"sub": sub, "aud": "authenticated", "exp": int(time.time() + exp_in)}, key,
                      algorithm=alg, headers=headers)


def _get(client: TestClient, token: str, path: str = "/bookings?user_id=u1") -> int:
    return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_tokens_signed_with_the_projects_keys_read_their_own_data(make_settings, jwks, no_retry_pause):
    ec_key, rsa_key = ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)
    jwks.publish(ec_key, "ec-1", "ES256")
    jwks.publish(rsa_key, "rsa-1", "RS256")
    settings = make_settings(supabase_jwks_url=jwks.url, supabase_jwt_secret=JWT_SECRET)
    with TestClient(create_app(settings)) as client:
        assert client.post("/bookings", json=booking_body("mine", user_id="u1"),
                           headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
                           ).status_code == 201
        assert _get(client, _token(ec_key, "ec-1", "ES256")) == 200
        assert _get(client, _token(rsa_key, "rsa-1", "RS256")) == 200
        assert _get(client, _token(JWT_SECRET, None, "HS256")) == 200, "the legacy secret still works beside"
        assert _get(client, _token(ec_key, "ec-1", "ES256"), "/bookings?user_id=u2") == 403, "own data only"
        assert _get(client, _token(ec_key, "ec-1", "ES256", exp_in=-120)) == 401, "expired"
        other = ec.generate_private_key(ec.SECP256R1())
        assert _get(client, _token(other, "ec-1", "ES256")) == 401, "signed by a key that is not the project's"
        assert _get(client, _token(ec_key, "rsa-1", "ES256")) == 401, "the key decides the algorithm"
        assert _get(client, _token(ec_key, "ec-1", "ES256")[:-4] + "AAAA") == 401


def test_known_keys_keep_working_offline_and_a_new_key_is_fetched_when_it_appears(make_settings, jwks,
                                                                                   no_retry_pause):
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks.publish(first, "k1", "ES256")
    with TestClient(create_app(make_settings(supabase_jwks_url=jwks.url))) as client:
        assert _get(client, _token(first, "k1", "ES256")) == 200
        fetched = jwks.fetches
        assert _get(client, _token(first, "k1", "ES256")) == 200 and jwks.fetches == fetched, "kept, not re-read"
        jwks.publish(second, "k2", "ES256")  # Supabase rotates: the new key is published first
        assert _get(client, _token(second, "k2", "ES256")) == 200, "an unknown key id is looked up at once"
        jwks.stop()  # the court's internet goes away
        assert _get(client, _token(first, "k1", "ES256")) == 200 and _get(client, _token(second, "k2", "ES256")) == 200
        assert _get(client, _token(ec.generate_private_key(ec.SECP256R1()), "k3", "ES256")) == 401


def test_forged_key_ids_do_not_flood_the_project_with_fetches(make_settings, jwks):
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.publish(key, "k1", "ES256")
    with TestClient(create_app(make_settings(supabase_jwks_url=jwks.url))) as client:
        assert _get(client, _token(key, "k1", "ES256")) == 200
        for i in range(20):
            assert _get(client, _token(key, f"forged-{i}", "ES256")) == 401
        assert jwks.fetches == 1, "one fetch per JWKS_RETRY_S at most"
