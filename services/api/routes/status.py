from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Query, status

from services.api.deps import Authorized, State
from shared.models import SystemStatusRow
from shared.timeutil import UtcDatetime, utc_now

router = APIRouter(prefix="/status", tags=["status"], dependencies=[Authorized])


@router.get("", response_model=SystemStatusRow, responses={404: {"description": "No snapshot yet"}})
def latest_status(state: State) -> SystemStatusRow:
    row = state.store.get_system_status(state.settings.camera_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the status service has not reported yet")
    return row


@router.get("/history", response_model=list[SystemStatusRow], summary="Snapshots since a time (for charts)")
def status_history(state: State, since: UtcDatetime | None = Query(None)) -> list[SystemStatusRow]:
    return state.store.list_system_status(state.settings.camera_id, since or utc_now() - timedelta(hours=24))
