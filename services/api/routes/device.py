"""The operator's device actions: each service's availability and recent warnings, restart a service, collect a
status snapshot now. Commands go over MQTT (shared/runtime.py obeys them); only this API sends them, for the
device token (a Supabase user token is refused), and every action is logged and published on
ezrec/<camera>/operator/action."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, status

from services.api.deps import BODY_ERRORS, UNAUTHORIZED, Authorized, State
from services.api.schemas import CommandResult, Error, RestartIn, ServiceState, SnapshotResult
from shared.payloads import CommandAck
from shared.timeutil import utc_now
from shared.topics import SERVICES

log = logging.getLogger(__name__)

router = APIRouter(prefix="/device", tags=["device"], dependencies=[Authorized], responses=UNAUTHORIZED)

ACK_WAIT_S = 5.0
SNAPSHOT_WAIT_S = 10.0
ServiceNameParam = Annotated[Literal["api", "recorder", "worker", "status"], Path(
    description="The service to restart", examples=["worker"])]
_NOT_CONNECTED = {503: {"model": Error, "description": "The API is not connected to the broker: nothing was sent"},
                  409: {"model": Error, "description": "The service is offline: there is nothing to ask"}}


def _connected(state: State) -> None:
    if not state.bus.connected.is_set():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the API is not connected to the MQTT broker: the command was not sent (a command "
                            "delivered later than 60 s is not obeyed anyway); try again once the broker is back")


def _online(state: State, service: str) -> None:
    """A command for a service that is not running would only go stale at the broker: say so instead."""
    pid, _ = state.device.heartbeat(service)
    said = state.device.availability.get(service)
    if pid is None and said != "online":
        raise HTTPException(status.HTTP_409_CONFLICT, detail=(
            f"the {service} service is offline (no fresh heartbeat on this device, and its last word on the broker "
            f"was {said or 'nothing'}): there is nothing to ask it; ezrec up and Docker start a service that died by "
            "themselves"))


def _answer(ack: CommandAck | None, waited: float) -> tuple[str, str]:
    """(outcome, message) for the operator's event and the response."""
    if ack is None:
        return "no_answer", (f"no answer within {waited:.0f} s: the service may be down or busy (it ignores the "
                             "command once it is 60 s old)")
    return ack.outcome, ack.detail


@router.get("/services", response_model=list[ServiceState], summary="Each service's availability and recent warnings",
            description="One entry per service (per worker, when several share the camera): availability as the "
            "service last said it (retained, the will included), pid and heartbeat age from its heartbeat file, and "
            "its last 50 records of WARNING and above, as it published them on ezrec/<camera>/<service>/logs "
            "(secrets replaced by `***`).")
def list_services(state: State) -> list[ServiceState]:
    device = state.device
    out: list[ServiceState] = []
    for service in SERVICES:
        pid, age = device.heartbeat(service)
        availability = device.availability.get(service, "unknown")
        published = device.logs_of(service) or [None]
        for logs in published:
            out.append(ServiceState(
                service=service, instance=logs.instance if logs else None,  # type: ignore[arg-type]
                availability=availability if availability in ("online", "offline") else "unknown",  # type: ignore[arg-type]
                pid=pid, heartbeat_age_s=round(age, 1) if age is not None else None,
                records=logs.records if logs else [], records_sent_at=logs.sent_at if logs else None))
    return out


@router.post("/services/{service}/restart", response_model=CommandResult, summary="Restart one service",
             description="Sends `restart` on ezrec/<camera>/<service>/command. The service logs it as a warning, "
             "stops exactly as on SIGTERM (the recorder closes its open segment first; a booking under way resumes "
             "into the same folder) and exits with code 75; `ezrec up` starts it again at once, Docker through the "
             "compose file's `restart: unless-stopped`. Waits up to 5 s for the service's answer (`ack`). Restarting "
             "`api` answers first, then this API stops and comes back. Every worker sharing the camera restarts.",
             responses={**_NOT_CONNECTED, **BODY_ERRORS})
def restart_service(state: State, service: ServiceNameParam, body: RestartIn | None = Body(None)) -> CommandResult:
    _connected(state)
    _online(state, service)
    reason = state.redact(body.reason) if body and body.reason else None
    command = state.device.send(state.bus, service, "restart", reason)
    ack = state.device.wait_ack(command.request_id, ACK_WAIT_S)
    outcome, message = _answer(ack, ACK_WAIT_S)
    detail = f"{command.request_id}: {message}" + (f" (reason: {reason})" if reason else "")
    log.info("operator: restart of %s: %s: %s", service, outcome, detail)
    state.device.record(state.bus, "service_restart", service, outcome, detail)
    return CommandResult(request_id=command.request_id, service=service, action="restart", sent_at=command.sent_at,
                         ack=ack, message=message)


@router.post("/status/snapshot", response_model=SnapshotResult, summary="Collect a status snapshot now",
             description="Asks the status service (ezrec/<camera>/status/command, `snapshot`) to collect, publish and "
             "store a snapshot at once instead of at its next interval (SYSTEM_STATUS_INTERVAL); alerts are judged "
             "on it as on any other. Waits up to 10 s for it and returns it.", responses=_NOT_CONNECTED)
def status_snapshot(state: State) -> SnapshotResult:
    _connected(state)
    _online(state, "status")
    asked = utc_now()
    command = state.device.send(state.bus, "status", "snapshot", None)
    ack = state.device.wait_ack(command.request_id, ACK_WAIT_S)
    outcome, message = _answer(ack, ACK_WAIT_S)
    snapshot = state.device.wait_status_after(asked, SNAPSHOT_WAIT_S) if ack is not None and \
        ack.outcome == "done" else None
    if ack is not None and ack.outcome == "done" and snapshot is None:
        outcome, message = "no_snapshot", f"the status service said: {ack.detail}; none arrived within " \
            f"{SNAPSHOT_WAIT_S:.0f} s"
    elif snapshot is not None:
        message = f"snapshot collected at {snapshot.collected_at.isoformat()}"
    log.info("operator: status snapshot %s: %s: %s", command.request_id, outcome, message)
    state.device.record(state.bus, "status_snapshot", "status", outcome, f"{command.request_id}: {message}")
    return SnapshotResult(request_id=command.request_id, service="status", action="snapshot",
                          sent_at=command.sent_at, ack=ack, message=message, snapshot=snapshot)
