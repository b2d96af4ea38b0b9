"""Who is calling: the device's API_TOKEN (everything) or, optionally, a Supabase user (their own data).

The API token is compared in constant time. A Supabase access token is an HS256 JWT signed with the
project's JWT secret (SUPABASE_JWT_SECRET); its `sub` is the user id, and it only ever grants reads
of that user's bookings, videos and settings.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import jwt

from shared.settings import Settings

_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUPABASE_AUDIENCE = "authenticated"


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

    def is_device_token(self, presented: str | None) -> bool:
        return presented is not None and secrets.compare_digest(presented.encode(), self._token)

    def principal(self, presented: str | None) -> Principal | None:
        """The caller, or None when the credential is missing, wrong, expired or not allowed."""
        if presented is None:
            return None
        if self.is_device_token(presented):
            return DEVICE
        if self._jwt_secret is None or presented.count(".") != 2:
            return None
        try:
            claims = jwt.decode(presented, self._jwt_secret, algorithms=["HS256"], audience=SUPABASE_AUDIENCE,
                                options={"require": ["exp", "sub"]}, leeway=30)
        except jwt.InvalidTokenError:
            return None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not _USER_ID.match(sub):
            return None
        return Principal(user_id=sub)
