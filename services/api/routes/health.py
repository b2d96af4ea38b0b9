from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import State

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    mqtt_connected: bool
    camera_id: str


@router.get("/health", response_model=Health, summary="Liveness (no token needed)")
async def health(state: State) -> Health:
    return Health(status="ok", mqtt_connected=state.bus.connected.is_set(), camera_id=state.settings.camera_id)
