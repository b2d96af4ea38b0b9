"""Request dependencies: settings, store, bus and the bearer-token check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.schedule import SchedulePublisher
from shared.bus import MqttBus
from shared.settings import Settings
from shared.store import Store


@dataclass
class AppState:
    settings: Settings
    store: Store
    bus: MqttBus
    schedule: SchedulePublisher


def get_state(request: Request) -> AppState:
    return request.app.state.ezrec


_bearer = HTTPBearer(auto_error=False, description="API_TOKEN from the device's .env")


def require_token(
    state: Annotated[AppState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Constant-time comparison, so response timing does not leak the token."""
    expected = state.settings.api_token
    if credentials is None or expected is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


State = Annotated[AppState, Depends(get_state)]
Authorized = Depends(require_token)
