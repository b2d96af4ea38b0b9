"""Bookings: create (one or many), list, read, delete."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Body, HTTPException, Query, Response, status

from services.api.deps import Authorized, State
from shared.models import Booking, BookingIn, BookingStatus
from shared.store import BookingConflict
from shared.timeutil import UtcDatetime, utc_now

router = APIRouter(prefix="/bookings", tags=["bookings"], dependencies=[Authorized])

_EXAMPLE = {
    "id": "court1-2026-11-25-1800",
    "user_id": "player42",
    "start_time": "2026-11-25T18:00:00Z",
    "end_time": "2026-11-25T19:00:00Z",
}


def _check_rules(items: list[BookingIn], max_minutes: int) -> None:
    now = utc_now()
    problems = []
    for item in items:
        if item.end_time - item.start_time > timedelta(minutes=max_minutes):
            problems.append(f"{item.id}: longer than MAX_BOOKING_MINUTES={max_minutes}")
        if item.end_time <= now:
            problems.append(f"{item.id}: ends in the past")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        problems.append("the same id appears twice in one request")
    if problems:
        raise HTTPException(422, detail=problems)


@router.post(
    "",
    response_model=Booking | list[Booking],
    status_code=status.HTTP_201_CREATED,
    summary="Create one booking or a list (all or nothing)",
    responses={
        200: {"description": "Every booking already existed with the same details (idempotent retry)"},
        409: {"description": "Same id with different details, or overlap with another booking"},
        422: {"description": "Naive timestamp, end before start, too long, bad id"},
    },
)
def create_bookings(
    state: State,
    response: Response,
    body: BookingIn | list[BookingIn] = Body(..., examples=[_EXAMPLE]),
) -> Booking | list[Booking]:
    items = body if isinstance(body, list) else [body]
    if not items:
        raise HTTPException(422, detail="empty list")
    _check_rules(items, state.settings.max_booking_minutes)
    try:
        results = state.store.create_bookings(items, state.settings.camera_id)
    except BookingConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail={"message": str(exc), "conflicting_id": exc.conflicting_id}) from exc
    if not any(created for _, created in results):
        response.status_code = status.HTTP_200_OK
    for camera_id in sorted({b.camera_id for b, created in results if created}):
        state.schedule.publish(camera_id)
    bookings = [b for b, _ in results]
    return bookings if isinstance(body, list) else bookings[0]


@router.get("", response_model=list[Booking], summary="List bookings, filtered")
def list_bookings(
    state: State,
    camera_id: str | None = None,
    user_id: str | None = None,
    status_: BookingStatus | None = Query(None, alias="status"),
    from_: UtcDatetime | None = Query(None, alias="from", description="bookings ending after this time"),
    to: UtcDatetime | None = Query(None, description="bookings starting before this time"),
) -> list[Booking]:
    return state.store.list_bookings(camera_id=camera_id, user_id=user_id, status=status_,
                                     ends_after=from_, starts_before=to)


@router.get("/{booking_id}", response_model=Booking, responses={404: {"description": "No such booking"}})
def get_booking(state: State, booking_id: str) -> Booking:
    booking = state.store.get_booking(booking_id)
    if booking is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"booking {booking_id} not found")
    return booking


@router.delete(
    "/{booking_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Cancel a booking that has not started",
    responses={404: {"description": "No such booking"},
               409: {"description": "Already started or recorded: the recording is kept"}},
)
def delete_booking(state: State, booking_id: str) -> Response:
    booking = state.store.get_booking(booking_id)
    if booking is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"booking {booking_id} not found")
    if booking.status != BookingStatus.confirmed or booking.start_time <= utc_now():
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"booking {booking_id} has started or been recorded ({booking.status})")
    state.store.delete_booking(booking_id)
    state.schedule.publish(booking.camera_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


