"""A booking's job -> its finished video: the processed segments joined, or the whole recording processed.

The choice is made in assemble.py and written to the job before any output exists (mode `parts` or
`whole`), so after a kill -9 a finished output found on disk is known to be complete and whose it is.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from services.video_worker.assemble import Decision, assess, recording_over
from services.video_worker.booking_facts import booking_end, recording_frames
from services.video_worker.context import WorkerContext
from services.video_worker.job_table import Job, JobState, Part, PartState
from services.video_worker.media.decode import describe_video
from services.video_worker.media.intro import PreparedIntro
from services.video_worker.media.memory import release_memory
from services.video_worker.media.process import RecordingUnreadable, prepared_intro, process_video
from services.video_worker.media.remux_check import (
    REMUX,
    TRANSCODE,
    HeaderUnreadable,
    Reason,
    SegmentHeader,
    logos_to_draw,
    read_header,
)
from services.video_worker.media.remux_join import JoinAborted, JoinMismatch, JoinResult, join_parts
from services.video_worker.part_step import JOIN_LEAD_SEGMENTS, booking_logos
from shared import spliced_file
from shared.capture_stamp import logo_fingerprint
from shared.models import BookingStatus
from shared.payloads import VideoProcessed
from shared.recordings.layout import WHOLE_INPUT_NAME, BookingDir, segment_file
from shared.recordings.segments import NothingRecorded, join_segments
from shared.video_format import OutputFormat

log = logging.getLogger(__name__)

WAIT_FOR_RECORDING_MAX_S = 30.0
STREAM_GRACE_S = 60.0  # a streamed join waits this long after the booking's end for its last segment
STREAM_POLL_S = 0.1


class Stopping(Exception):
    """The worker is shutting down in the middle of an encode."""


def finish_job(ctx: WorkerContext, job: Job) -> None:
    owner = ctx.finish_owner
    output = ctx.output_path(job.booking_id)
    ctx.drop_temps(output)
    parts = ctx.jobs.parts(job.booking_id)
    if spliced_file.exists(output) and job.mode in ("parts", "whole"):  # made before a crash, state not saved yet
        covered = _covered(job, parts)
        route = route_of(parts) if job.mode == "parts" else (TRANSCODE, [Reason.whole_recording.value])
        _processed(ctx, job, output, covered, time.monotonic(), list(job.warnings), route)
        return
    on_disk = ctx.recording_on_disk(job.booking_id, job.raw_file)
    if job.mode != "whole" and job.frames_expected is None and on_disk is not None:
        expected = recording_frames(on_disk)  # found by the scan, no recording/finished event: count it
        ctx.jobs.update(job.booking_id, owner, keep=True, frames_expected=expected)
        job = ctx.jobs.get(job.booking_id) or job
    plan = ctx.jobs.plan(job.booking_id)
    fps = float(OutputFormat.from_json(plan["fmt"]).rate) if plan else None
    decision = assess(job, parts, end_time=booking_end(ctx, job.booking_id), fps=fps, now=time.time(),
                      raw_exists=on_disk is not None,
                      file_exists=lambda p: ctx.segment_file(p.booking_id, p.idx, p.file) is not None)
    if decision.kind == "wait":
        if plan is not None and _may_stream(ctx, job, parts, plan) and _stream(ctx, job, plan, output):
            return
        ctx.jobs.retry_later(job.booking_id, owner, decision.reason, delay=decision.delay, count=False)
        return
    started = time.monotonic()
    if decision.kind == "parts" and plan is not None:
        ctx.jobs.update(job.booking_id, owner, keep=True, mode="parts")
        try:
            warnings = _join(ctx, job, decision.parts, plan, output)
        except JoinMismatch as exc:
            log.warning("booking %s: segments cannot be joined (%s); processing the recording whole",
                        job.booking_id, exc)
            decision = Decision("whole", str(exc))
        else:
            _processed(ctx, job, output, decision.frames, started, warnings, route_of(decision.parts))
            return
    log.info("booking %s: processing the whole recording (%s)", job.booking_id, decision.reason)
    _whole(ctx, job, output, plan, started)


def _covered(job: Job, parts: list[Part]) -> int | None:
    if job.mode == "parts":
        return sum(p.frames_in or 0 for p in parts)
    return job.frames_expected


def _join(ctx: WorkerContext, job: Job, parts: list[Part], plan: dict, output: Path) -> list[str]:
    fmt = OutputFormat.from_json(plan["fmt"])
    warnings: list[str] = []
    for p in parts:
        warnings.extend(p.warnings)
    prepared = _intro(ctx, plan, fmt, warnings)
    pieces = [ctx.settings.processed_dir / p.output for p in parts if p.state == PartState.done and p.output]
    missing = [p for p in pieces if not p.is_file()]
    if missing:
        raise JoinMismatch(f"processed segment(s) missing: {[p.name for p in missing]}")
    result = join_parts(output, prepared, pieces, fmt, splice=True)
    log.info("booking %s: joined intro (%d frames) + %d segments into %d frames", job.booking_id,
             result.intro_frames, len(pieces), result.frames)
    return warnings


def _intro(ctx: WorkerContext, plan: dict, fmt: OutputFormat, warnings: list[str]) -> PreparedIntro | None:
    media = ctx.media.from_objects(plan.get("intro"), [])
    warnings.extend(media.problems)
    if media.intro is None or ctx.intros.has(media.intro, fmt):
        return prepared_intro(media.intro, fmt, ctx.intros, warnings)[0]
    with ctx.encode_slot:  # normally prepared at the first segment already
        return prepared_intro(media.intro, fmt, ctx.intros, warnings)[0]


# ---- streaming join: the video is assembled along with the booking's last minutes ----------------


class _StreamAbort(Exception):
    """The segments stopped fitting a streamed join (a failed segment, a long wait): join them later."""


def _may_stream(ctx: WorkerContext, job: Job, parts: list[Part], plan: dict) -> bool:
    """The booking ends soon (or just ended), its segments so far are fine: join them as they come."""
    end = booking_end(ctx, job.booking_id)
    now = time.time()
    lead = JOIN_LEAD_SEGMENTS * ctx.settings.segment_seconds
    return (job.mode == "auto" and end is not None and end - lead <= now < end + STREAM_GRACE_S
            and bool(parts) and parts[0].idx == 0
            and not any(p.state in (PartState.failed, PartState.gone) or p.has_audio for p in parts))


def _stream(ctx: WorkerContext, job: Job, plan: dict, output: Path) -> bool:
    """Join the segments as they are processed; True when the video was made (state processed)."""
    owner = ctx.finish_owner
    fmt = OutputFormat.from_json(plan["fmt"])
    fps = float(fmt.rate)
    started = time.monotonic()
    warnings: list[str] = []
    prepared = _intro(ctx, plan, fmt, warnings)
    consumed: list[Part] = []
    end = booking_end(ctx, job.booking_id) or time.time()
    expected = round((end - (plan.get("start") or end)) * fps) + (prepared.frames if prepared else 0)

    def pieces() -> Iterator[Path]:
        idx = 0
        while (part := _next_part(ctx, job.booking_id, idx, fps)) is not None:
            consumed.append(part)
            idx += 1
            if part.state == PartState.done and part.output:
                yield ctx.settings.processed_dir / part.output

    def accept(_result: JoinResult) -> bool:
        fresh = ctx.jobs.get(job.booking_id) or job
        decision = assess(fresh, ctx.jobs.parts(job.booking_id), end_time=booking_end(ctx, job.booking_id),
                          fps=fps, now=time.time(),
                          raw_exists=ctx.recording_on_disk(job.booking_id, fresh.raw_file) is not None,
                          file_exists=lambda p: ctx.segment_file(p.booking_id, p.idx, p.file) is not None)
        if decision.kind != "parts" or [p.idx for p in decision.parts] != [p.idx for p in consumed]:
            log.info("booking %s: streamed join not used (%s)", job.booking_id, decision.reason)
            return False
        ctx.jobs.update(job.booking_id, owner, keep=True, mode="parts")  # from here the output counts
        return True

    try:
        result = join_parts(output, prepared, pieces(), fmt, expected_frames=expected, sync=True, accept=accept,
                            splice=True)
    except (_StreamAbort, JoinAborted, Stopping) as exc:
        log.info("booking %s: streamed join stopped: %s", job.booking_id, exc or type(exc).__name__)
        return False
    except JoinMismatch as exc:
        log.warning("booking %s: segments cannot be joined (%s); processing the recording whole",
                    job.booking_id, exc)
        ctx.jobs.update(job.booking_id, owner, keep=True, mode="whole")
        return False
    for part in consumed:
        warnings.extend(part.warnings)
    log.info("booking %s: streamed join of intro (%d frames) + %d segments: %d frames", job.booking_id,
             result.intro_frames, len(consumed), result.frames)
    _processed(ctx, job, output, sum(p.frames_in or 0 for p in consumed), started, warnings, route_of(consumed))
    return True


def _next_part(ctx: WorkerContext, booking_id: str, idx: int, fps: float) -> Part | None:
    """Segment `idx` once processed; None when the recording ended before it. Raises _StreamAbort, Stopping."""
    while True:
        if ctx.stop.is_set():
            raise Stopping
        parts = ctx.jobs.parts(booking_id)
        part = next((p for p in parts if p.idx == idx), None)
        if part is not None:
            if part.state in (PartState.failed, PartState.gone) or part.has_audio:
                raise _StreamAbort(f"segment {idx} {part.state.value}")
            if part.state in (PartState.done, PartState.skipped):
                return part
        else:
            earlier = [p for p in parts if p.idx < idx]
            job = ctx.jobs.get(booking_id)
            end = booking_end(ctx, booking_id)
            if len(earlier) == idx and recording_over(earlier, end, fps, time.time()):
                return None
            if job is not None and job.frames_expected is not None and len(earlier) == idx \
                    and sum(p.frames_in or 0 for p in earlier) == job.frames_expected:
                return None  # the recorder joined exactly these (it stopped early)
            if end is not None and time.time() > end + STREAM_GRACE_S:
                raise _StreamAbort(f"segment {idx} still missing {STREAM_GRACE_S:.0f}s after the end")
            if job is not None and _gone_for_good(ctx, job, idx):
                raise _StreamAbort(f"segment {idx} is not on disk and the recording is finished")
        time.sleep(STREAM_POLL_S)


def _gone_for_good(ctx: WorkerContext, job: Job, idx: int) -> bool:
    """No event can bring this segment any more: the recording is finished (a segment folder is marked finished
    only once all its segments are closed; a joined file replaced them) and the segment's file is not there.
    Waiting out the grace period would only delay the whole-recording fallback."""
    if ctx.recording_on_disk(job.booking_id, job.raw_file) is None:
        return False
    return ctx.segment_file(job.booking_id, idx, segment_file(job.booking_id, idx)) is None


def _whole(ctx: WorkerContext, job: Job, output: Path, plan: dict | None, started: float) -> None:
    owner = ctx.finish_owner
    recording = ctx.recording_on_disk(job.booking_id, job.raw_file)
    if recording is None:
        delay = min(WAIT_FOR_RECORDING_MAX_S, 1.0 + job.attempts)
        ctx.jobs.retry_later(job.booking_id, owner, "waiting for the finished recording", delay=delay)
        return
    ctx.jobs.update(job.booking_id, owner, keep=True, mode="whole")
    if plan is not None:
        media = ctx.media.from_objects(plan.get("intro"), [])
        specs, fingerprint, problems = booking_logos(ctx, plan)
    else:
        media = ctx.media.sync_user(job.user_id)
        specs = media.logo_specs
        fingerprint, problems = logo_fingerprint(specs), []
    warnings = list(media.problems) + problems

    def progress(percent: float, fps: float) -> None:
        if ctx.stop.is_set():
            raise Stopping  # a long encode must not hold up a shutdown: it starts again at the next run
        ctx.progress(job.booking_id, min(99.0, percent), fps, TRANSCODE, Reason.whole_recording.value)

    source = recording
    try:
        header = None
        if recording.is_dir():  # the recording is its segments: joined into one file for this fallback only
            source, header = _joined_input(ctx, job)
        with ctx.encode_slot:
            result = process_video(source, output, intro=media.intro, logos=logos_to_draw(header, specs, fingerprint),
                                   encode=ctx.encode, progress=progress, intro_cache=ctx.intros)
    except Stopping:
        ctx.jobs.retry_later(job.booking_id, owner, "interrupted by a shutdown", delay=0, count=False)
        return
    except RecordingUnreadable as exc:
        log.error("booking %s: recording unreadable: %s (kept at %s)", job.booking_id, exc, recording)
        ctx.jobs.fail(job.booking_id, owner, str(exc))
        ctx.failed(job.booking_id, "recording", str(exc), final=True)
        return
    finally:
        if source != recording:
            source.unlink(missing_ok=True)
        release_memory()
    warnings.extend(result.warnings)
    _processed(ctx, job, output, result.input_packets, started, warnings, (TRANSCODE, [Reason.whole_recording.value]))


def _joined_input(ctx: WorkerContext, job: Job) -> tuple[Path, SegmentHeader | None]:
    """The booking's segments joined into one file (as the recorder used to), and the first one's header
    (capture's stamp: whether its logos are already in the picture). Raises RecordingUnreadable."""
    booking_dir = BookingDir(ctx.settings.raw_dir, job.booking_id)
    segments = booking_dir.segments()
    if not segments:
        raise RecordingUnreadable(f"no segment left in {booking_dir.path.name}")
    header = None
    with contextlib.suppress(HeaderUnreadable):
        header = read_header(segments[0])
    meta = booking_dir.read_meta()
    booking = ctx.store.get_booking(job.booking_id)
    origin = meta.origin if meta else booking.start_time if booking else header.first_capture if header else None
    if origin is None:
        raise RecordingUnreadable(f"{booking_dir.path.name}: no time origin for its segments")
    target = ctx.parts_dir(job.booking_id) / WHOLE_INPUT_NAME
    ctx.drop_temps(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        join_segments(segments, target, origin)
    except NothingRecorded as exc:
        raise RecordingUnreadable(str(exc)) from exc
    return target, header


def route_of(parts: list[Part]) -> tuple[str, list[str]]:
    """How a video joined from these parts was made: remux only when every part was used as it is."""
    used = [p for p in parts if p.state in (PartState.done, PartState.skipped)]
    reasons = list(dict.fromkeys(p.route_reason for p in used if p.route != REMUX and p.route_reason))
    if used and all(p.route == REMUX for p in used):
        return REMUX, []
    return TRANSCODE, reasons


def _processed(ctx: WorkerContext, job: Job, output: Path, covered: int | None, started: float,
               warnings: list[str], route: tuple[str, list[str]]) -> None:
    frames, duration = describe_video(output)
    kind, reasons = route
    ctx.jobs.set_state(job.booking_id, ctx.finish_owner, JobState.processed, frames_covered=covered,
                       warnings=warnings, route=kind, route_reasons=reasons)
    ctx.store.advance_booking_status(job.booking_id, BookingStatus.video_processed)
    ctx.warn_all(job.booking_id, warnings)
    ctx.progress(job.booking_id, 100.0, frames / max(1e-3, time.monotonic() - started), kind,
                 ", ".join(reasons) or None)
    ctx.bus.publish(ctx.bus.topics.video_processed, VideoProcessed(
        booking_id=job.booking_id, duration_s=duration, frames=frames, size_bytes=spliced_file.size(output),
        warnings=list(dict.fromkeys(warnings)), worker=ctx.name, route=kind, route_reasons=reasons))  # type: ignore[arg-type]
    log.info("booking %s processed in %.1fs by %s%s: %d frames, %.1fs", job.booking_id, time.monotonic() - started,
             kind, f" ({', '.join(reasons)})" if reasons else "", frames, duration)
    ctx.upload_wake.set()
