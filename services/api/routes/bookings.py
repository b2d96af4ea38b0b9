"""Bookings: create (one or many), list, read, change times, cancel."""

from __future__ import annotations

from collections.abc import Container
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from services.api.booking_rules import (
    PHASES,
    VALIDITY,
    Phase,
    RuleViolation,
    cancel_action,
    check_change,
    check_times,
    end_now,
)
from services.api.deps import BODY_ERRORS, FORBIDDEN, UNAUTHORIZED, Authorized, Reader, State, UserFilter, only_own
from services.api.schemas import BookingsIn, BookingTimes, ConflictError, Error, unprocessable
from shared.models import SAFE_ID_PATTERN, Booking, BookingIn, BookingStatus
from shared.store import BookingConflict, NotFound
from shared.timeutil import StrictUtcDatetime, utc_now

router = APIRouter(prefix="/bookings", tags=["bookings"], responses=UNAUTHORIZED)

BookingId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, examples=["court1-2026-11-25-1800"],
                                description=f"The booking's id, as given at creation ({SAFE_ID_PATTERN.strip('^$')})")]

_EXAMPLE = {
    "id": "court1-2026-11-25-1800",
    "user_id": "player42",
    "start_time": "2026-11-25T18:00:00Z",
    "end_time": "2026-11-25T19:00:00Z",
}
_EXAMPLES: dict[str, Any] = {
    "one": {"summary": "One booking", "value": _EXAMPLE},
    "list": {"summary": "Several bookings, all or nothing", "value": [
        _EXAMPLE, {**_EXAMPLE, "id": "court1-2026-11-25-1900", "start_time": "2026-11-25T19:00:00+01:00",
                   "end_time": "2026-11-25T20:30:00+01:00"}]},
}
_NOT_FOUND = {404: {"model": Error, "description": "No such booking"}}
_BOOKING_LIST = TypeAdapter(list[Booking])
_CONFLICT = {"model": ConflictError}


def _not_found(booking_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"booking {booking_id} not found")


def _conflict(message: str, conflicting_id: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail={"message": message, "conflicting_id": conflicting_id})


def _violation(exc: RuleViolation, booking_id: str, loc: tuple[str | int, ...] = ("body",)) -> Exception:
    if exc.status == 422:
        return unprocessable(((*loc, exc.field or "body"), f"{booking_id}: {exc.message}"))
    return _conflict(exc.message, booking_id)


def _check_new(items: list[BookingIn], single: bool, max_minutes: int, stored: Container[str]) -> None:
    """Time rules for ids not yet stored only: a stored id is answered from the store (200 when identical,
    else 409), and a client retrying after the booking's end has passed must still get its 200."""
    now = utc_now()
    problems = []
    for index, item in enumerate(items):
        if item.id in stored:
            continue
        try:
            check_times(item.start_time, item.end_time, now, max_minutes)
        except RuleViolation as exc:
            loc = ("body", exc.field or "body") if single else ("body", index, exc.field or "body")
            problems.append((loc, f"{item.id}: {exc.message}"))
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        problems.append((("body",), "the same id appears twice in one request"))
    if problems:
        raise unprocessable(*problems)


@router.post(
    "",
    response_model=Booking | list[Booking],
    status_code=status.HTTP_201_CREATED,
    dependencies=[Authorized],
    summary="Create one booking or a list (all or nothing)",
    description=VALIDITY,
    responses={
        200: {"model": Booking | list[Booking], "description": "Every booking already existed, identical"},
        409: {**_CONFLICT, "description": "Same id with different details, or overlap with another booking"},
        **BODY_ERRORS,
        422: {"description": "A rule of a valid booking broken (above); `loc` names the field"},
    },
)
def create_bookings(
    state: State,
    response: Response,
    body: BookingsIn = Body(..., openapi_examples=_EXAMPLES),
) -> Booking | list[Booking]:
    single = not isinstance(body.root, list)
    items = [body.root] if isinstance(body.root, BookingIn) else body.root
    if not items:
        raise unprocessable((("body",), "empty list"))
    camera_id = state.settings.camera_id
    stored = {item.id: b for item in items if (b := state.store.get_booking(item.id)) is not None}
    _check_new(items, single, state.settings.max_booking_minutes, stored)
    for item in items:
        if item.id in stored and not stored[item.id].same_request(item, camera_id):
            raise _conflict(f"booking {item.id} already exists with different details", item.id)
    # Stored ones are answered as read, never handed to the store: were one deleted meanwhile, the store
    # would create it again without the time rules.
    new = [item for item in items if item.id not in stored]
    try:
        created = state.store.create_bookings(new, camera_id) if new else []
    except BookingConflict as exc:
        raise _conflict(str(exc), exc.conflicting_id) from exc
    by_id = {b.id: (b, False) for b in stored.values()} | {b.id: (b, made) for b, made in created}
    results = [by_id[item.id] for item in items]
    if not any(made for _, made in results):
        response.status_code = status.HTTP_200_OK
    for changed_camera in sorted({b.camera_id for b, made in results if made}):
        state.schedule.publish(changed_camera)
    bookings = [b for b, _ in results]
    return bookings[0] if single else bookings


@router.get("", response_model=list[Booking], summary="List bookings, filtered", responses=FORBIDDEN,
            description="Ordered by start time. A user token (Supabase JWT) only ever sees its own bookings.")
async def list_bookings(
    state: State,
    principal: Reader,
    camera_id: str | None = Query(None, description="Only bookings on this camera (court)", examples=["cam1"]),
    user_id: UserFilter = None,
    status_: BookingStatus | None = Query(None, alias="status", description="Only bookings in this state",
                                          examples=["confirmed"]),
    from_: StrictUtcDatetime | None = Query(None, alias="from", description="bookings ending after this time",
                                      examples=["2026-11-25T00:00:00Z"]),
    to: StrictUtcDatetime | None = Query(None, description="bookings starting before this time",
                                   examples=["2026-11-26T00:00:00Z"]),
) -> Response:
    user = only_own(principal, user_id)

    def build() -> bytes:
        return _BOOKING_LIST.dump_json(state.store.list_bookings(
            camera_id=camera_id, user_id=user, status=status_, ends_after=from_, starts_before=to))

    body = await state.reads.get(("bookings", camera_id, user, status_, from_, to), build)
    return Response(body, media_type="application/json")


@router.get("/{booking_id}", response_model=Booking, summary="One booking", responses=_NOT_FOUND)
def get_booking(state: State, principal: Reader, booking_id: BookingId) -> Booking:
    booking = state.store.get_booking(booking_id)
    if booking is None or not principal.can_read(booking.user_id):
        raise _not_found(booking_id)
    return booking


@router.put(
    "/{booking_id}",
    response_model=Booking,
    dependencies=[Authorized],
    summary="Change a booking's start and end",
    description=PHASES,
    responses={**_NOT_FOUND,
               409: {**_CONFLICT, "description": "Overlap (names the other booking), or the booking's phase "
                     "forbids the change (names this booking)"},
               **BODY_ERRORS,
               422: {"description": "A rule of a valid booking broken; `loc` names the field"}},
)
def update_booking(state: State, booking_id: BookingId, body: BookingTimes) -> Booking:
    booking = state.store.get_booking(booking_id)
    if booking is None:
        raise _not_found(booking_id)
    try:
        check_change(booking, body.start_time, body.end_time, utc_now(), state.settings.max_booking_minutes)
    except RuleViolation as exc:
        raise _violation(exc, booking_id) from exc
    if (body.start_time, body.end_time) == (booking.start_time, booking.end_time):
        return booking
    try:
        updated = state.store.update_booking_times(booking_id, body.start_time, body.end_time)
    except NotFound as exc:
        raise _not_found(booking_id) from exc
    except BookingConflict as exc:
        raise _conflict(str(exc), exc.conflicting_id) from exc
    state.schedule.publish(updated.camera_id)
    return updated


@router.delete(
    "/{booking_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[Authorized],
    summary="Cancel a booking (or end one that is recording)",
    description=PHASES,
    responses={200: {"model": Booking, "description": "It was recording: ended now, the recording so far is kept"},
               204: {"description": "It had not started: removed"},
               **_NOT_FOUND,
               409: {**_CONFLICT, "description": "It has ended or been recorded: nothing is deleted"}},
)
def delete_booking(state: State, booking_id: BookingId) -> Response:
    booking = state.store.get_booking(booking_id)
    if booking is None:
        raise _not_found(booking_id)
    now = utc_now()
    try:
        action = cancel_action(booking, now)
    except RuleViolation as exc:
        raise _violation(exc, booking_id) from exc
    if action == Phase.upcoming:
        state.store.delete_booking(booking_id)
        state.schedule.publish(booking.camera_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    try:
        ended = state.store.update_booking_times(booking_id, booking.start_time, end_now(booking, now))
    except NotFound as exc:
        raise _not_found(booking_id) from exc
    except BookingConflict as exc:  # the recorder finished it meanwhile
        raise _conflict(str(exc), exc.conflicting_id) from exc
    state.schedule.publish(ended.camera_id)
    return JSONResponse(ended.model_dump(mode="json"), status_code=status.HTTP_200_OK)
