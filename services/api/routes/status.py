from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Query, status

from services.api.deps import Authorized, State
from services.api.schemas import Error
from shared.models import SystemStatusRow
from shared.timeutil import StrictUtcDatetime, utc_now

router = APIRouter(prefix="/status", tags=["status"], dependencies=[Authorized])


@router.get(
    "",
    response_model=SystemStatusRow,
    summary="The latest health snapshot",
    description="The newest snapshot the status service stored for this camera (one every SYSTEM_STATUS_INTERVAL "
    "seconds, 60 by default): CPU, memory, disk, temperature, services' availability, the booking recording "
    "now and the next one, queued jobs and uploads, the last errors and active alerts. `snapshot` is the "
    "payload also published on `ezrec/<camera_id>/status` (live through GET /events).",
    responses={404: {"model": Error, "description": "No snapshot yet (the status service has not reported)"}},
)
def latest_status(state: State) -> SystemStatusRow:
    row = state.store.get_system_status(state.settings.camera_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the status service has not reported yet")
    return row


@router.get("/history", response_model=list[SystemStatusRow], summary="Snapshots since a time (for charts)")
def status_history(
    state: State,
    since: StrictUtcDatetime | None = Query(None, description="Snapshots collected at or after this time (with a UTC "
                                      "offset); default: the last 24 hours", examples=["2026-11-25T00:00:00Z"]),
) -> list[SystemStatusRow]:
    return state.store.list_system_status(state.settings.camera_id, since or utc_now() - timedelta(hours=24))
