"""Highlights from the API: a player's app (or the operator) asks for a clip of the booking being recorded."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import BODY_ERRORS, UNAUTHORIZED, Reader, State
from services.api.schemas import Error
from shared.models import SAFE_ID_PATTERN, BookingStatus
from shared.payloads import HighlightRequest
from shared.timeutil import utc_now

router = APIRouter(prefix="/bookings", tags=["highlights"], responses=UNAUTHORIZED)

BookingId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, examples=["court1-2026-11-25-1800"],
                                description="The booking being recorded now")]


class HighlightAsk(BaseModel):
    """Both optional: the device's HIGHLIGHT_SECONDS / HIGHLIGHT_AFTER_S otherwise."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"seconds": 30, "after_s": 3}, {}]})

    seconds: float | None = Field(None, gt=0, le=300, description="Seconds before now", examples=[30])
    after_s: float | None = Field(None, ge=0, le=60, description="Seconds after now", examples=[3])


class HighlightAccepted(BaseModel):
    request_id: str = Field(description="Echoed in the recorder's answer (`request_ids` of `highlight/clip`, or "
                                        "`request_id` of `highlight/refused`)")
    booking_id: str
    topic: str = Field(description="Where the clip is announced when stored (`highlight/created`, with its video id)")


@router.post(
    "/{booking_id}/highlights",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HighlightAccepted,
    summary="Ask for a highlight of the booking being recorded",
    description=(
        "A clip of the last `seconds` (default HIGHLIGHT_SECONDS, 30) up to now plus `after_s` (default "
        "HIGHLIGHT_AFTER_S, 3) after it, cut from the recording without touching it. A request within a clip's "
        "span extends that clip. The device token, or the booking's own user's token. **202**: handed to the "
        "recorder, which answers on `highlight/clip` (or `highlight/refused`); the clip is a `videos` row of kind "
        "`highlight` once `highlight/created` says so (`GET /videos?booking_id=...&kind=highlight`, and live on "
        "`GET /events`). **409**: the booking is not being recorded now."),
    responses={404: {"model": Error, "description": "No such booking (or not the user's)"},
               409: {"model": Error, "description": "The booking is not being recorded now"}, **BODY_ERRORS},
)
def ask_highlight(state: State, principal: Reader, booking_id: BookingId,
                  body: HighlightAsk | None = Body(None)) -> HighlightAccepted:
    booking = state.store.get_booking(booking_id)
    if booking is None or not principal.can_read(booking.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"booking {booking_id} not found")
    now = utc_now()
    if booking.status != BookingStatus.confirmed or not booking.start_time <= now < booking.end_time:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=(
            f"booking {booking_id} is not being recorded now (status {booking.status.value}, "
            f"{booking.start_time.isoformat()} to {booking.end_time.isoformat()})"))
    ask = body or HighlightAsk()
    request_id = uuid.uuid4().hex
    topics = state.bus.topics
    state.bus.publish(topics.highlight_request, HighlightRequest(
        booking_id=booking_id, seconds=ask.seconds, after_s=ask.after_s, request_id=request_id, source="api"))
    return HighlightAccepted(request_id=request_id, booking_id=booking_id, topic=topics.highlight_created)
