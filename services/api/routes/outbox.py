"""The cloud outbox for the operator: writes the cloud refused and the ones they hold back; replay or drop a refused
one. Device token only; every action is logged and published on ezrec/<camera>/operator/action."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.api.deps import UNAUTHORIZED, Authorized, State
from services.api.schemas import Error
from shared.store.cloud.operator import (
    DropResult,
    OutboxOp,
    OutboxOperator,
    OutboxOpNotFound,
    OutboxOpNotRefused,
    OutboxView,
    ReplayResult,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/outbox", tags=["cloud outbox"], dependencies=[Authorized], responses=UNAUTHORIZED)

NO_CLOUD = ("no cloud outbox: SUPABASE_URL is not set, so this device keeps everything itself and no write waits for "
            "a cloud")
OpId = Annotated[int, Path(ge=1, description="The outbox operation id (from GET /outbox)", examples=[12])]
_NO_CLOUD = {404: {"model": Error, "description": "No cloud configured (no outbox), or no such operation"}}
_CONFLICT = {409: {"model": Error, "description": "The operation is not a refused one (held or being retried)"}}


def _operator(state: State) -> OutboxOperator:
    operator = state.store.cloud_outbox()
    if operator is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_CLOUD)
    return operator


def _target(op_id: int, key: str | None = None) -> str:
    return f"outbox operation {op_id}" + (f" ({key})" if key else "")


@router.get("", response_model=OutboxView, summary="Cloud writes that have not gone through", responses=_NO_CLOUD,
            description="Writes the cloud refused (kept for a person; each holds back the later writes of its booking "
            "or user, listed in `holds`, with what dropping it would cost), the writes they hold, writes being "
            "retried (the cloud unreachable or a fault), the faults every write meets, and the latest dropped "
            "writes. 404 without Supabase: there is no cloud outbox.")
def list_outbox(state: State) -> OutboxView:
    return _operator(state).view()


@router.get("/{op_id}", response_model=OutboxOp, summary="One outbox operation, with the write itself",
            responses=_NO_CLOUD)
def show_outbox_op(state: State, op_id: OpId) -> OutboxOp:
    try:
        return _operator(state).show(op_id)
    except OutboxOpNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.post("/{op_id}/replay", response_model=ReplayResult, summary="Replay a refused write",
             responses={**_NO_CLOUD, **_CONFLICT},
             description="Once the cause is fixed (a bucket limit raised, a MIME type allowed, a conflicting row "
             "removed): the write becomes pending again, first of its booking, and the writes it held follow in "
             "order. Waits up to `wait_s` for the cloud's answer: `applied`, `refused` again (kept, with the new "
             "error) or still `pending`.")
def replay_outbox_op(state: State, op_id: OpId,
                     wait_s: float = Query(10.0, ge=0, le=30, description="How long to wait for the cloud's answer, "
                                           "seconds", examples=[10])) -> ReplayResult:
    operator = _operator(state)
    try:
        result = operator.replay(op_id, wait_s)
    except OutboxOpNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except OutboxOpNotRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    log.info("operator: replay of outbox operation %s: %s: %s", op_id, result.outcome, result.detail)
    state.device.record(state.bus, "outbox_replay", _target(op_id, result.op.key if result.op else None),
                        result.outcome, result.detail)
    return result


@router.delete("/{op_id}", response_model=DropResult, summary="Drop a refused write for good",
               responses={**_NO_CLOUD, **_CONFLICT},
               description="The cloud will never get it: `lost` says what the booking loses (GET /outbox/{op_id} "
               "says it beforehand, as `if_dropped`), and the writes it held go on (`released`). The operation is "
               "kept in the outbox file as the record of what was dropped; a dropped video upload keeps its copy on "
               "this device, which the disk guard then never frees.")
def drop_outbox_op(state: State, op_id: OpId) -> DropResult:
    operator = _operator(state)
    try:
        result = operator.drop(op_id)
    except OutboxOpNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except OutboxOpNotRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    log.warning("operator: dropped outbox operation %s (%s): %s", op_id, result.what, result.lost)
    state.device.record(state.bus, "outbox_drop", _target(op_id), "dropped", f"{result.what}: {result.lost}")
    return result
