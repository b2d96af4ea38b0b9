"""The soak's script, drawn from one seed: which bookings are attempted when, and which faults strike when.

Pure and deterministic (random.Random(seed) only), so a failing seed replays the same script. Times are seconds
from the soak's zero (the moment the stack is up); the driver turns them into wall-clock times."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Literal

Action = Literal["keep", "overlap", "cancel_before", "end_early", "shorten"]
"""keep: recorded in full; overlap: an attempt overlapping an accepted booking (the API answers 409);
cancel_before: DELETE before its start (204, nothing recorded); end_early: DELETE while recording (200, ended
now, the footage so far kept); shorten: PUT a nearer end while recording."""
CameraKind = Literal["rtsp", "synthetic"]
"""rtsp: a real RTSP server, remuxed (frozen by SIGSTOP, restarted by kill -9); synthetic: the recorder's own
test pattern, encoded at capture (frozen through its test hook, shared/failpoints.py; it has no server
to restart, so camera_restart is skipped)."""

USERS = {"u-intro": ("intro", "logo"), "u-logo": ("logo",), "u-plain": ()}
"""Users with an intro and a logo, with a logo only, with nothing (their media uploaded through the API)."""

KILLS = ("kill_api", "kill_recorder", "kill_worker", "kill_status")
TIMED = ("broker_down", "cloud_down", "cloud_errors", "disk_fill", "camera_freeze", "camera_restart")
INSTANT = ("mqtt_junk", "api_hostile")
FAULT_KINDS = KILLS + TIMED + INSTANT

DURATIONS: dict[str, tuple[float, float]] = {
    "broker_down": (5, 20), "cloud_down": (8, 25), "cloud_errors": (8, 20), "disk_fill": (8, 20),
    "camera_freeze": (3, 8), "camera_restart": (2, 6),
}
"""Seconds each timed fault lasts (uniform in the range): the broker stopped 5-20 s, as the issue says."""


@dataclass
class Attempt:
    id: str
    user_id: str
    start_s: float
    duration_s: float
    action: Action
    action_at_s: float | None = None
    """When the DELETE/PUT is sent (cancel_before: before the start; end_early/shorten: mid-recording)."""
    new_end_s: float | None = None
    """shorten: the new end, from the soak's zero."""
    create_at_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Fault:
    kind: str
    at_s: float
    duration_s: float = 0.0


def camera_for(seed: int) -> CameraKind:
    """Every other seed runs on the synthetic camera: 1 and 3 on RTSP, 2 on the synthetic one."""
    return "synthetic" if seed % 2 == 0 else "rtsp"


@dataclass
class Plan:
    seed: int
    camera: CameraKind = "rtsp"
    attempts: list[Attempt] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def end_s(self) -> float:
        return max([a.end_s for a in self.attempts] + [f.at_s + f.duration_s for f in self.faults])

    def as_dict(self) -> dict:
        return {"seed": self.seed, "camera": self.camera, "attempts": [asdict(a) for a in self.attempts],
                "faults": [asdict(f) for f in self.faults]}


def make_plan(seed: int, bookings: int, lead_s: float = 15.0, min_s: float = 5.0, max_s: float = 20.0,
              faults_per_kind: int | None = None, camera: CameraKind | None = None) -> Plan:
    """`bookings` accepted-or-cancelled bookings back to back or with short gaps, plus roughly one overlapping
    attempt in five; every fault kind at least once (`faults_per_kind`, default one per ten bookings), at
    seeded moments between the first start and a little after the last end (the worker's tail is fair game).
    The camera is the seed's (camera_for) unless given; it takes no draw: a seed's script is the same on both."""
    rng = random.Random(seed)
    plan = Plan(seed, camera or camera_for(seed))
    t = lead_s
    users = list(USERS)
    for i in range(bookings):
        duration = round(rng.uniform(min_s, max_s), 1)
        user = users[i % len(users)] if i < len(users) else rng.choice(users)
        roll = rng.random()
        action: Action = ("cancel_before" if roll < 0.1 else "end_early" if roll < 0.2
                          else "shorten" if roll < 0.3 else "keep")
        attempt = Attempt(id=f"s{seed}-b{i:03d}", user_id=user, start_s=round(t, 1), duration_s=duration,
                          action=action, create_at_s=max(0.0, round(t - rng.uniform(8, 14), 1)))
        if action == "cancel_before":
            attempt.action_at_s = round(attempt.start_s - rng.uniform(2, 4), 1)
            attempt.create_at_s = min(attempt.create_at_s, attempt.action_at_s - 4)
        elif action in ("end_early", "shorten"):
            attempt.action_at_s = round(attempt.start_s + duration * rng.uniform(0.4, 0.6), 1)
            if action == "shorten":
                attempt.new_end_s = round(attempt.action_at_s + rng.uniform(1.5, 3), 1)
        plan.attempts.append(attempt)
        # an attempt overlapping this booking: refused with 409, never recorded (not against one cancelled before
        # its start: by the attempt's time the slot may be free again, and the attempt rightly accepted)
        if rng.random() < 0.2 and action != "cancel_before":
            plan.attempts.append(Attempt(
                id=f"s{seed}-x{i:03d}", user_id=rng.choice(users), start_s=round(t + duration * 0.5, 1),
                duration_s=round(rng.uniform(min_s, max_s), 1), action="overlap",
                create_at_s=max(0.0, round(t - rng.uniform(2, 6), 1))))
        gap = 0.0 if rng.random() < 0.4 else rng.uniform(1, 4)  # back to back, or a short gap
        t += duration + gap
    window = (lead_s, t + 10.0)
    per_kind = faults_per_kind or max(1, round(bookings / 10))
    for kind in FAULT_KINDS:
        low, high = DURATIONS.get(kind, (0.0, 0.0))
        # the same kind never overlaps itself: one slot of the window per occurrence
        slot = (window[1] - window[0]) / per_kind
        for k in range(per_kind):
            length = round(rng.uniform(low, high), 1) if high else 0.0
            start = window[0] + k * slot
            at = rng.uniform(start, max(start, start + slot - length))
            plan.faults.append(Fault(kind, round(at, 1), length))
    _freeze_mid_booking(plan)
    plan.attempts.sort(key=lambda a: a.create_at_s)
    plan.faults.sort(key=lambda f: f.at_s)
    return plan


FREEZE_INTO_S = 1.5
"""A camera freeze starts this long into a recorded booking (past its first keyframe)."""


def _freeze_mid_booking(plan: Plan) -> None:
    """A camera frozen while no booking is due is never read, so nothing notices: each camera_freeze moves to
    FREEZE_INTO_S into the recorded booking (kept in full) that starts nearest its drawn moment, one booking per
    freeze and never overlapping another, so the recorder must see the stall (no draw: the rest of the script
    is unchanged)."""
    kept = [a for a in plan.attempts if a.action == "keep"]
    placed: list[tuple[float, float]] = []
    for fault in sorted((f for f in plan.faults if f.kind == "camera_freeze"), key=lambda f: f.at_s):
        drawn = fault.at_s
        for attempt in sorted(kept, key=lambda a: (abs(a.start_s - drawn), a.start_s)):
            at = round(attempt.start_s + FREEZE_INTO_S, 1)
            if all(at + fault.duration_s <= s or at >= e for s, e in placed):
                fault.at_s = at
                placed.append((at, at + fault.duration_s))
                kept.remove(attempt)
                break
