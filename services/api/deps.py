"""Request dependencies: app state and the auth checks (device token; optional Supabase user JWT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.auth import Authenticator, Principal
from services.api.device import DeviceWatch
from services.api.events import EventHub
from services.api.read_cache import ReadCache
from services.api.schedule import SchedulePublisher
from services.api.schemas import Error
from services.api.share import ShareSigner
from shared.bus import MqttBus
from shared.logs import Redactor
from shared.settings import Settings
from shared.store import Store
from shared.thumbnails import ThumbnailCache


@dataclass
class AppState:
    settings: Settings
    store: Store
    bus: MqttBus
    schedule: SchedulePublisher
    auth: Authenticator
    hub: EventHub
    shares: ShareSigner
    thumbnails: ThumbnailCache
    reads: ReadCache
    device: DeviceWatch
    redact: Redactor


async def get_state(request: Request) -> AppState:
    """async (like every dependency here): a sync one costs a thread-pool hop per request."""
    return request.app.state.ezrec


_bearer = HTTPBearer(auto_error=False, description="API_TOKEN from the device's .env (or, for reads of a user's "
                     "own data, that user's Supabase access token when SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL "
                     "is set)")
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_QUERY_TOKEN = Query(None, description="The same token as the Authorization header, for clients that cannot send "
                     "headers (EventSource, <video src>, <img src>)", examples=["my-device-api-token"])

UserFilter = Annotated[str | None, Query(
    description="Only this user's rows (a user token always reads its own; naming another user is a 403)",
    examples=["player42"])]
"""The optional `user_id` filter of the list routes (pair with `only_own`)."""

UNAUTHORIZED = {401: {"model": Error, "description": "Missing or invalid token"}}


def _unauthorized() -> HTTPException:
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="missing or invalid bearer token",
                         headers={"WWW-Authenticate": "Bearer"})


State = Annotated[AppState, Depends(get_state)]


async def require_token(state: State, credentials: _Credentials) -> None:
    """The device token only, compared in constant time (response timing does not leak it)."""
    if credentials is None or not state.auth.is_device_token(credentials.credentials):
        raise _unauthorized()


async def require_token_or_query(state: State, credentials: _Credentials, token: str | None = _QUERY_TOKEN) -> None:
    presented = credentials.credentials if credentials is not None else token
    if not state.auth.is_device_token(presented):
        raise _unauthorized()


async def reader(state: State, credentials: _Credentials) -> Principal:
    principal = state.auth.principal(credentials.credentials if credentials is not None else None)
    if principal is None:
        raise _unauthorized()
    return principal


async def reader_or_query(state: State, credentials: _Credentials, token: str | None = _QUERY_TOKEN) -> Principal:
    principal = state.auth.principal(credentials.credentials if credentials is not None else token)
    if principal is None:
        raise _unauthorized()
    return principal


def only_own(principal: Principal, user_id: str | None) -> str | None:
    """The user filter a list request really gets: a user token always reads only its own rows."""
    if principal.is_device:
        return user_id
    if user_id is not None and user_id != principal.user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a user token may only read its own data")
    return principal.user_id


Authorized = Depends(require_token)
AuthorizedOrQuery = Depends(require_token_or_query)
Reader = Annotated[Principal, Depends(reader)]
ReaderOrQuery = Annotated[Principal, Depends(reader_or_query)]
FORBIDDEN = {403: {"model": Error, "description": "A user token asked for another user's data"}}
BODY_ERRORS = {
    400: {"model": Error, "description": "The body could not be read (not UTF-8, or a broken multipart form)"},
    413: {"model": Error, "description": "Body larger than MAX_REQUEST_BODY_MB (uploads: MAX_UPLOAD_MB)"},
}
