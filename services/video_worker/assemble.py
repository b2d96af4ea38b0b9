"""Whether a booking's processed segments make its whole video, or the recording must be processed whole.

Correctness first: the pieces are used only when they provably cover the recording: every segment
index from 0 up, all processed in one format, and either as many recording frames as the recorder's
joined file holds (recording/finished says how many) or, before that event, a last segment that
reaches the booking's end. Anything else (a segment lost, a worker restarted after the recorder
deleted its segments, parts in two formats) means the joined recording is processed as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.video_worker.job_table import Job, Part, PartState

END_TOLERANCE_FRAMES = 1.5
"""The last frame of a booking is captured one frame before its end; this much slack for timing jitter."""


@dataclass(frozen=True)
class Decision:
    kind: Literal["parts", "whole", "wait"]
    reason: str
    parts: list[Part] = field(default_factory=list)
    delay: float = 0.5

    @property
    def frames(self) -> int:
        return sum(p.frames_in or 0 for p in self.parts)


def _wait(reason: str, delay: float = 0.5) -> Decision:
    return Decision("wait", reason, delay=delay)


def _whole(reason: str) -> Decision:
    return Decision("whole", reason)


def recording_over(parts: list[Part], end_time: float | None, fps: float | None, now: float) -> bool:
    """A closed segment holds the booking's last frame, and the booking's end has passed."""
    if end_time is None or not fps or now < end_time:
        return False
    ends = [p.end_at for p in parts if p.closed and p.end_at is not None and p.state != PartState.pending]
    return bool(ends) and max(ends) >= end_time - END_TOLERANCE_FRAMES / fps


def assess(job: Job, parts: list[Part], *, end_time: float | None, fps: float | None, now: float,
           raw_exists: bool, file_exists: Callable[[Part], bool]) -> Decision:
    if job.mode == "whole":
        return _whole("the recording is processed whole")
    finished = job.frames_expected is not None  # the recorder has joined its segments: no more will come
    if not parts:
        return _whole("no segment was processed") if raw_exists else _wait("waiting for the recording", 2.0)
    if [p.idx for p in parts] != list(range(len(parts))):
        missing = sorted(set(range(max(p.idx for p in parts) + 1)) - {p.idx for p in parts})
        return _whole(f"segment(s) {missing} never seen") if finished else _wait("segments missing so far", 1.0)
    for p in parts:
        if p.state in (PartState.failed, PartState.gone):
            return _whole(f"segment {p.idx} {p.state.value}")
        if p.has_audio:
            return _whole(f"segment {p.idx} has audio")
        if p.state == PartState.pending:
            held = p.owner is not None and p.lease_until >= now
            if not held and not file_exists(p):
                return _whole(f"segment {p.idx} was never processed and its file is gone")
            return _wait(f"segment {p.idx} in progress")
    done = [p for p in parts if p.state == PartState.done]
    if not done:
        return _whole("no segment could be decoded")
    if len({p.fmt_key for p in done}) > 1:
        return _whole("segments were encoded in different formats")
    decision = Decision("parts", "every segment processed", parts=parts)
    if finished:
        if decision.frames != job.frames_expected:
            return _whole(f"segments hold {decision.frames} frames, the recording {job.frames_expected}")
        return decision
    if recording_over(parts, end_time, fps, now):
        return decision
    return _wait("recording not over yet", 1.0)
