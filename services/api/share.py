"""Signed share tokens: `<payload>.<mac>`, both base64url, payload = `link_id:video_id:expires_unix`.

The MAC is HMAC-SHA256 under a key derived from API_TOKEN, so a token cannot be forged or its expiry
stretched, and rotating API_TOKEN invalidates every link at once. Expiry is inside the signed payload;
revocation needs the store's share_links row (a link whose row is gone or revoked is refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,200}\.[A-Za-z0-9_-]{43}$"
_PAYLOAD = re.compile(r"^([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]{1,64}):([0-9]{1,12})$")


class InvalidShareToken(ValueError):
    pass


@dataclass(frozen=True)
class ShareClaim:
    link_id: str
    video_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ShareSigner:
    def __init__(self, api_token: str) -> None:
        self._key = hmac.new(api_token.encode(), b"ezrec share links v1", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def sign(self, link_id: str, video_id: str, expires_at: datetime) -> str:
        payload = f"{link_id}:{video_id}:{int(expires_at.timestamp())}".encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def verify(self, token: str) -> ShareClaim:
        """Checks the signature only; the caller checks expiry and revocation (to answer 410 vs 404)."""
        if not re.match(TOKEN_PATTERN, token):
            raise InvalidShareToken("malformed share token")
        encoded, mac = token.split(".")
        try:
            payload = _unb64(encoded)
        except ValueError as exc:
            raise InvalidShareToken("malformed share token") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidShareToken("bad share token signature")
        match = _PAYLOAD.match(payload.decode("ascii", errors="replace"))
        if match is None:
            raise InvalidShareToken("malformed share token")
        return ShareClaim(match.group(1), match.group(2), datetime.fromtimestamp(int(match.group(3)), UTC))
