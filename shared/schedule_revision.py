"""Which schedule snapshot wins: revisions read from the clock, bounded ahead of it (docs/schedule-revisions.md).

A snapshot's `revision` is its publisher's wall clock in microseconds at publication, at least one more
than the publisher's previous revision. So a publisher that starts afresh (wiped DATA_DIR, restored
backup, a second API) lands above everything published before it, and no counter has to survive.

A receiver (recorder, status) takes a snapshot when its revision is higher than the one it holds, and
never one more than MAX_AHEAD ahead of its own clock: such a revision is implausible (forged, or made
while the clock was wrong) and would otherwise hide every honest snapshot after it. A held revision more
than STALE_AHEAD ahead of the clock no longer blocks: the clock stepped back (NTP corrected a fast clock),
so the next plausible snapshot replaces it even if lower. A publisher whose previous revision is more
than MAX_AHEAD ahead restarts from its clock rather than publish what receivers would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.timeutil import utc_now

MAX_AHEAD = timedelta(seconds=10)
"""Publisher and receivers share the device's clock: 10 s covers delivery delays, never a forged revision."""
STALE_AHEAD = MAX_AHEAD / 2
"""Half of MAX_AHEAD: a publisher that restarts from its clock is then always followed (5 s of margin)."""

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_AHEAD_US = MAX_AHEAD // timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """Microseconds since the Unix epoch (the revision's unit), exactly: no float on the way."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def _ahead_s(revision: int, now_us: int) -> float:
    return (revision - now_us) / _US


def next_revision(previous: int | None, now: datetime | None = None) -> tuple[int, str | None]:
    """The publisher's next revision, and why it restarted from the clock (None when it did not)."""
    now_us = micros(now or utc_now())
    if previous is None:
        return now_us, None
    revision = max(previous + 1, now_us)
    if revision - now_us > _MAX_AHEAD_US:
        return now_us, (f"the previous revision {previous} is {_ahead_s(previous, now_us):.0f} s ahead of the "
                        f"clock; restarting from the clock")
    return revision, None


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str
    warn: bool = False  # worth a warning (not the usual duplicate or newer snapshot)
    implausible: bool = False  # refused as bad input: worth a dead letter


def judge_revision(held: int | None, incoming: int, now: datetime | None = None) -> Verdict:
    """Take `incoming` over the held revision (None: no schedule yet)? With the reason, for the log."""
    now_us = micros(now or utc_now())
    ahead = _ahead_s(incoming, now_us)
    if incoming - now_us > _MAX_AHEAD_US:
        if held is None:
            return Verdict(True, f"revision {incoming} is {ahead:.0f} s ahead of this device's clock; taken only "
                                 f"for want of any schedule, the next plausible one replaces it", warn=True)
        return Verdict(False, f"revision {incoming} is {ahead:.0f} s ahead of this device's clock (more than "
                              f"{MAX_AHEAD.total_seconds():.0f} s): implausible", warn=True, implausible=True)
    if held is None:
        return Verdict(True, "first schedule")
    if incoming > held:
        return Verdict(True, f"newer than revision {held}")
    held_ahead = _ahead_s(held, now_us)
    if held_ahead > STALE_AHEAD.total_seconds():
        return Verdict(True, f"replaces revision {held}, which is {held_ahead:.0f} s ahead of the clock (a clock "
                             f"step back, or a revision taken for want of another)", warn=True)
    if incoming == held:
        return Verdict(False, "already applied")
    return Verdict(False, f"older than revision {held}, already applied", warn=True)
