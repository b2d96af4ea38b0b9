"""The operator's view of the cloud outbox: writes the cloud refused (kept, holding their booking's later writes),
the writes they hold back, and the two things a person can do about a refused one: replay it once the cause is
fixed, or drop it (what the booking then loses is said first). Served by the API (/outbox), `ezrec outbox` and
the dashboard; every action is logged and published there."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from shared.payloads import CloudProblem
from shared.store.base import StoreError
from shared.store.cloud.outbox import SNAPSHOT_KEY_PREFIX, CloudOp, OpRecord, holds_after_refusal
from shared.timeutil import UtcDatetime

if TYPE_CHECKING:
    from shared.store.cloud.store import SupabaseStore

log = logging.getLogger(__name__)

REPLAY_POLL_S = 0.2
STATUS_ROWS_LISTED = 3


class OutboxOpNotFound(StoreError):
    pass


class OutboxOpNotRefused(StoreError):
    """Only a refused operation can be replayed or dropped: a pending one may be in the drainer's hands."""


class BookingBrief(BaseModel):
    id: str
    user_id: str
    status: str
    start_time: UtcDatetime


class HeldWrite(BaseModel):
    id: int = Field(examples=[13])
    kind: str = Field(examples=["video_upsert"])
    what: str = Field(examples=["the videos row of booking court1-2026-11-25-1800"])
    created_at: UtcDatetime


class OutboxOp(BaseModel):
    """One cloud write that has not gone through."""

    id: int = Field(description="The outbox operation id (replay/drop it by this id)", examples=[12])
    kind: str = Field(examples=["object_put"])
    key: str = Field(description="Its ordering key: a booking id, `user:<id>` or `status:<camera>`",
                     examples=["court1-2026-11-25-1800"])
    state: Literal["refused", "held", "retrying"] = Field(
        description="`refused`: the cloud said no, kept for a person (replay or drop); `held`: waiting behind a "
        "refused write of the same booking or user; `retrying`: its last attempt failed (the cloud was unreachable or "
        "a fault), retried with backoff")
    what: str = Field(examples=["the upload of videos/player42/court1-2026-11-25-1800.mp4 (61.2 MB)"])
    booking: BookingBrief | None = Field(None, description="The booking it belongs to, as this device has it")
    user_id: str | None = Field(None, description="The user, for a user's settings or media")
    error: str | None = Field(None, description="The cloud's last answer", examples=[
        "resumable upload: Storage answered 413: Maximum size exceeded"])
    attempts: int = Field(examples=[1])
    created_at: UtcDatetime = Field(description="When the write was queued")
    failed_at: UtcDatetime | None = Field(None, description="When the cloud refused it (refused only)")
    age_s: float = Field(description="Seconds since it was refused (refused) or queued (the others)", examples=[3600])
    held_by: int | None = Field(None, description="The refused operation it waits behind (held only)")
    holds: list[HeldWrite] = Field(default_factory=list, description="The later writes of its booking or user that "
                                   "wait behind it (refused only)")
    if_dropped: str | None = Field(None, description="What dropping it costs (refused only)")
    payload: dict[str, Any] | None = Field(None, description="The queued write itself (GET /outbox/{id} only)")


class DroppedOp(BaseModel):
    id: int
    kind: str
    key: str
    what: str
    error: str | None
    dropped_at: UtcDatetime


class OutboxView(BaseModel):
    pending: int = Field(description="Writes not applied yet (held ones included)", examples=[4])
    refused: int = Field(examples=[1])
    held: int = Field(examples=[3])
    ops: list[OutboxOp] = Field(description="Refused writes (each followed by the ones it holds), then writes "
                                "being retried")
    faults: list[CloudProblem] = Field(default_factory=list, description="Conditions every write meets (a key not "
                                       "accepted, a read-only database, a missing schema): fixed in the project, "
                                       "not here; the writes go once they are")
    dropped: list[DroppedOp] = Field(default_factory=list, description="The latest dropped writes, newest first")
    not_listed: int = Field(0, description="Refused status rows left out of `ops` (only the latest few of each "
                            "camera are listed: each supersedes the last, and a broken table refuses one a minute)",
                            examples=[0])


class ReplayResult(BaseModel):
    id: int = Field(examples=[12])
    outcome: Literal["applied", "refused", "pending"] = Field(
        description="`applied`: the cloud took it (the writes it held follow); `refused`: refused again (still "
        "kept); `pending`: not applied within the wait (the cloud may be unreachable), it goes on being tried")
    detail: str = Field(examples=["the cloud took the upload of videos/player42/court1.mp4; 2 held write(s) follow"])
    released: int = Field(description="Held writes that were behind it", examples=[2])
    op: OutboxOp | None = Field(None, description="The operation as it is now (null once applied)")


class DropResult(BaseModel):
    id: int = Field(examples=[12])
    what: str = Field(examples=["the upload of videos/player42/court1.mp4 (61.2 MB)"])
    lost: str = Field(description="What the booking loses", examples=[
        "The cloud never gets videos/player42/court1.mp4: the video stays on this device only."])
    released: list[HeldWrite] = Field(description="The writes it held, which now go to the cloud")


def _utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _mb(size: object) -> str:
    return f" ({int(size) / 1e6:.1f} MB)" if isinstance(size, int) else ""


def describe(op: CloudOp) -> str:
    """One line a venue operator understands."""
    p = op.payload
    if op.kind == "object_put":
        return f"the upload of {p.get('bucket')}/{p.get('path')}{_mb(p.get('size'))}"
    if op.kind == "object_delete":
        return f"the removal of {p.get('bucket')}/{p.get('path')}"
    if op.kind == "booking_insert":
        return f"the new booking {op.key}"
    if op.kind == "booking_status":
        return f"booking {op.key}'s status {p.get('status')}"
    if op.kind == "booking_times":
        return f"booking {op.key}'s new times ({p.get('start')} to {p.get('end')})"
    if op.kind == "booking_delete":
        return f"the deletion of booking {op.key}"
    if op.kind == "video_upsert":
        return f"the videos row of booking {op.key}"
    if op.kind == "user_settings":
        return f"the settings of user {op.key.removeprefix('user:')}"
    if op.kind == "system_status":
        return f"a status row of camera {op.key.removeprefix(SNAPSHOT_KEY_PREFIX)}"
    return f"{op.kind.replace('_', ' ')} of {op.key}"


def if_dropped(op: CloudOp, held: list[HeldWrite], booking: BookingBrief | None) -> str:
    """What the booking (or user) loses when `op` is dropped, and what then happens to the writes it holds."""
    p = op.payload
    if op.kind == "object_put" and p.get("bucket") == "videos":
        lost = (f"The cloud never gets {p.get('bucket')}/{p.get('path')}: the video stays on this device only (the "
                "disk guard never frees this copy) and the players' app cannot download it from the cloud.")
    elif op.kind == "object_put":
        lost = (f"The cloud never gets {p.get('bucket')}/{p.get('path')}: the user's settings in the cloud may name a "
                "file it does not have; this device keeps using its own copy.")
    elif op.kind == "object_delete":
        lost = f"{p.get('bucket')}/{p.get('path')} stays in the cloud."
    elif op.kind == "booking_insert":
        lost = (f"The cloud never gets booking {op.key}: it exists on this device only, and its later writes may be "
                "refused too (the cloud has no such booking).")
    elif op.kind == "booking_status":
        now = f" (this device has it {booking.status})" if booking else ""
        lost = f"The cloud's booking {op.key} stays at its earlier status{now} until a later status update reaches it."
    elif op.kind == "booking_times":
        lost = f"The cloud keeps booking {op.key}'s earlier times: an app reading the cloud shows the old slot."
    elif op.kind == "booking_delete":
        lost = (f"Booking {op.key} stays in the cloud, and the next pull of bookings brings it back to this device.")
    elif op.kind == "video_upsert":
        lost = (f"The cloud's videos table never gets the row of booking {op.key}: the players' app does not list this "
                "video (its file may be in the bucket).")
    elif op.kind == "user_settings":
        lost = "The cloud keeps the user's earlier settings, and this device takes them back at its next refresh."
    elif op.kind == "system_status":
        lost = "One status row the cloud never gets; later rows replace it anyway."
    else:
        lost = f"The cloud never gets {describe(op)}."
    if held:
        lost += (f" The {len(held)} write(s) it holds back then go to the cloud: "
                 + "; ".join(h.what for h in held) + ".")
        if op.kind == "object_put" and any(h.kind == "video_upsert" for h in held):
            lost += " The videos row will name a file the cloud does not have."
    return lost


class OutboxOperator:
    def __init__(self, store: SupabaseStore) -> None:
        self.store = store
        self.outbox = store.outbox

    def _booking(self, key: str) -> BookingBrief | None:
        if key.startswith(("user:", SNAPSHOT_KEY_PREFIX, "object:")):
            return None
        booking = self.store.local.get_booking(key)
        if booking is None:
            return None
        return BookingBrief(id=booking.id, user_id=booking.user_id, status=booking.status.value,
                            start_time=booking.start_time)

    def _held(self, records: list[OpRecord]) -> dict[int, list[HeldWrite]]:
        """Each refused operation (of a key that holds) with the pending operations queued after it in its key."""
        refused = [r for r in records if r.refused and holds_after_refusal(r.op.key)]
        holds: dict[int, list[HeldWrite]] = {r.op.id: [] for r in refused}
        for record in records:
            if record.refused:
                continue
            behind = [r for r in refused if r.op.key == record.op.key and r.op.id < record.op.id]
            if behind:
                holds[behind[-1].op.id].append(HeldWrite(id=record.op.id, kind=record.op.kind,
                                                         what=describe(record.op), created_at=_utc(record.created_at)))
        return holds

    def _op(self, record: OpRecord, holds: dict[int, list[HeldWrite]], *, with_payload: bool = False) -> OutboxOp:
        op = record.op
        held_by = next((refused for refused, held in holds.items() if any(h.id == op.id for h in held)), None)
        state = "refused" if record.refused else "held" if held_by is not None else "retrying"
        booking = self._booking(op.key)
        mine = holds.get(op.id, []) if record.refused else []
        since = record.failed_at if record.refused and record.failed_at else record.created_at
        return OutboxOp(
            id=op.id, kind=op.kind, key=op.key, state=state, what=describe(op), booking=booking,  # type: ignore[arg-type]
            user_id=op.key.removeprefix("user:") if op.key.startswith("user:") else None, error=record.last_error,
            attempts=op.attempts, created_at=_utc(record.created_at), failed_at=_utc(record.failed_at),
            age_s=round(max(0.0, time.time() - since), 1), held_by=held_by, holds=mine,
            if_dropped=if_dropped(op, mine, booking) if record.refused else None,
            payload=op.payload if with_payload else None)

    def view(self) -> OutboxView:
        records = self.outbox.stuck()
        snapshots = [r for r in records if not holds_after_refusal(r.op.key)]
        listed = {r.op.id for r in snapshots[-STATUS_ROWS_LISTED:]}
        records = [r for r in records if holds_after_refusal(r.op.key) or r.op.id in listed]
        holds = self._held(records)
        refused = [r for r in records if r.refused]
        ordered: list[OpRecord] = []
        for record in refused:
            ordered.append(record)
            ordered += [r for r in records if any(h.id == r.op.id for h in holds.get(record.op.id, []))]
        ordered += [r for r in records if r not in ordered]
        faults = [p for p in self.store.cloud_problems() if p.kind == "cloud_fault"]
        dropped = [DroppedOp(id=r.op.id, kind=r.op.kind, key=r.op.key, what=describe(r.op), error=r.last_error,
                             dropped_at=_utc(r.dropped_at)) for r in self.outbox.dropped()]
        return OutboxView(pending=self.outbox.pending_count(), refused=self.outbox.refused_count(),
                          held=self.outbox.held_count(),
                          ops=[self._op(r, holds) for r in ordered], faults=faults, dropped=dropped,
                          not_listed=len(snapshots) - len(listed))

    def show(self, op_id: int) -> OutboxOp:
        record = self.outbox.record(op_id)
        if record is None:
            raise OutboxOpNotFound(f"outbox operation {op_id} is not in the outbox: applied or dropped already, or "
                                   "never queued")
        return self._op(record, self._held(self.outbox.stuck()), with_payload=True)

    def _refused(self, op_id: int) -> OutboxOp:
        op = self.show(op_id)
        if op.state != "refused":
            behind = f" (it waits behind refused operation {op.held_by}: replay or drop that one)" if op.held_by else ""
            raise OutboxOpNotRefused(f"outbox operation {op_id} is {op.state}, not refused{behind}; only a refused "
                                     "write can be replayed or dropped")
        return op

    def replay(self, op_id: int, wait_s: float = 10.0) -> ReplayResult:
        """Makes it pending again, first of its key, and waits (up to wait_s) to see what the cloud says."""
        before = self._refused(op_id)
        if not self.outbox.replay(op_id):
            raise OutboxOpNotRefused(f"outbox operation {op_id} is no longer refused")
        log.info("outbox operation %s (%s) replayed", op_id, before.what)
        self.store.drainer.note_reachable()  # a person asked now: no backoff left over from an outage
        self.store.drainer.wake.set()
        released = len(before.holds)
        deadline = time.monotonic() + wait_s
        while True:
            record = self.outbox.record(op_id)
            if record is None:
                follow = f"; {released} held write(s) follow" if released else ""
                return ReplayResult(id=op_id, outcome="applied", detail=f"the cloud took {before.what}{follow}",
                                    released=released)
            if record.refused:
                now = self._op(record, self._held(self.outbox.stuck()))
                return ReplayResult(id=op_id, outcome="refused", released=0, op=now,
                                    detail=f"the cloud refused {before.what} again: {record.last_error}")
            if time.monotonic() >= deadline:
                now = self._op(record, self._held(self.outbox.stuck()))
                return ReplayResult(id=op_id, outcome="pending", released=0, op=now,
                                    detail=f"{before.what} is queued again and not applied yet"
                                    + (f" (last answer: {record.last_error})" if record.last_error else "")
                                    + "; it goes on being tried")
            time.sleep(REPLAY_POLL_S)

    def drop(self, op_id: int) -> DropResult:
        before = self._refused(op_id)
        if self.outbox.drop(op_id) is None:
            raise OutboxOpNotRefused(f"outbox operation {op_id} is no longer refused")
        log.warning("outbox operation %s (%s) dropped by the operator: %s", op_id, before.what, before.if_dropped)
        self.store.drainer.wake.set()
        return DropResult(id=op_id, what=before.what, lost=before.if_dropped or "", released=before.holds)
