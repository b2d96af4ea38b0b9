"""Who is calling: the device's API_TOKEN (everything) or, optionally, a Supabase user (their own data).

The API token is compared in constant time. A Supabase access token is a JWT signed either with the
project's legacy JWT secret (HS256, SUPABASE_JWT_SECRET) or with its asymmetric signing keys (ES256 or
RS256, public keys from SUPABASE_JWKS_URL); its `sub` is the user id, and it only ever grants reads of
that user's bookings, videos and settings.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

import jwt

from shared.models import SAFE_ID_PATTERN
from shared.settings import Settings

log = logging.getLogger(__name__)

_USER_ID = re.compile(SAFE_ID_PATTERN)
SUPABASE_AUDIENCE = "authenticated"
ASYMMETRIC = ("ES256", "RS256")
JWKS_REFRESH_S = 600.0
"""Keys are re-read this often (Supabase rotates them with overlap), and at once for an unknown key id."""
JWKS_RETRY_S = 30.0
"""A failed or unhelpful fetch is not repeated sooner: forged key ids must not turn into a request flood."""
JWKS_TIMEOUT_S = 5.0


class JwksKeys:
    """The project's public signing keys, kept between fetches.

    A refresh that fails (the court's internet is down) keeps the last good set, so tokens signed with
    a known key keep working offline; only a key id never seen needs the network.
    """

    def __init__(self, url: str) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=JWKS_TIMEOUT_S)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        with self._lock:
            now = time.monotonic()
            wanted = kid not in self._keys or now - self._fetched_at > JWKS_REFRESH_S
            if wanted and now - self._tried_at >= JWKS_RETRY_S:
                self._tried_at = now
                try:
                    jwk_set = self._client.get_jwk_set()
                except jwt.PyJWTError as exc:  # unreachable, or not a usable key set
                    log.warning("Supabase signing keys unavailable (%s); keeping %d known key(s)", exc,
                                len(self._keys))
                else:
                    self._keys = {k.key_id: k for k in jwk_set.keys if k.key_id}
                    self._fetched_at = now
            return self._keys.get(kid) if kid else None


@dataclass(frozen=True)
class Principal:
    user_id: str | None = None
    """None for the device token (reads and writes everything); a user id for a Supabase user."""

    @property
    def is_device(self) -> bool:
        return self.user_id is None

    def can_read(self, owner: str) -> bool:
        return self.user_id is None or self.user_id == owner


DEVICE = Principal()


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        if settings.api_token is None:
            raise ValueError("API_TOKEN is not set: refusing to serve an API without authentication")
        self._token = settings.api_token.get_secret_value().encode()
        self._jwt_secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
        self._jwks = JwksKeys(settings.supabase_jwks_url) if settings.supabase_jwks_url else None

    def is_device_token(self, presented: str | None) -> bool:
        return presented is not None and secrets.compare_digest(presented.encode(), self._token)

    def principal(self, presented: str | None) -> Principal | None:
        """The caller, or None when the credential is missing, wrong, expired or not allowed."""
        if presented is None:
            return None
        if self.is_device_token(presented):
            return DEVICE
        if (self._jwt_secret is None and self._jwks is None) or presented.count(".") != 2:
            return None
        try:
            claims = self._verified_claims(presented)
        except jwt.InvalidTokenError:
            return None
        if claims is None:
            return None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not _USER_ID.match(sub):
            return None
        return Principal(user_id=sub)

    def _verified_claims(self, token: str) -> dict | None:
        """The claims of a token signed by the configured secret or one of the project's keys; the key picks
        the algorithm (never the token's header alone), so an HS256 token cannot pose as an ES256 one."""
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256" and self._jwt_secret is not None:
            key: object = self._jwt_secret
        elif alg in ASYMMETRIC and self._jwks is not None:
            jwk = self._jwks.key(header.get("kid"))
            if jwk is None or jwk.algorithm_name != alg:
                return None
            key = jwk.key
        else:
            return None
        return jwt.decode(token, key, algorithms=[alg], audience=SUPABASE_AUDIENCE,
                          options={"require": ["exp", "sub"]}, leeway=30)
