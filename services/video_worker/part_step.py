"""One recorder segment -> one processed piece (logos + the single encode), while the booking is still running.

A segment still being written is followed live (media/tail_reader.py). The booking's output format and media are
fixed at its first processed segment (its plan), so every piece of one booking joins by copy.
When the last segment is done and the booking is over, the booking's job is created at once, without
waiting for the recorder to join its segments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.video_worker.assemble import recording_over
from services.video_worker.booking_facts import booking_end, booking_user, capture_start
from services.video_worker.context import WorkerContext
from services.video_worker.job_table import JobState, Part, PartState
from services.video_worker.media.decode import MediaSource, SourceError, count_video_packets
from services.video_worker.media.memory import release_memory
from services.video_worker.media.process import (
    RecordingUnreadable,
    encode_part,
    prepared_intro,
    prepared_logos,
    recording_format,
)
from services.video_worker.media.remux_check import (
    REMUX,
    TRANSCODE,
    HeaderUnreadable,
    Reason,
    SegmentHeader,
    check_packets,
    intro_time_base,
    link_piece,
    logos_to_draw,
    read_header,
    remux_blocker,
)
from services.video_worker.media.tail_reader import TailReader
from shared import failpoints
from shared.atomic import fsync_dir
from shared.capture_stamp import NO_LOGOS, logo_fingerprint
from shared.overlay import LogoSpec
from shared.recordings.layout import segment_index, segment_name
from shared.video_format import OutputFormat

log = logging.getLogger(__name__)

CLOSED_AFTER_NEXT_S = 5.0
"""A segment with a successor that has not changed for this long is closed (the recorder closes it in ms)."""
STALL_S = 30.0
"""A segment that has not grown for this long, with no close announced, is given up on (its writer died)."""
OPEN_RECHECK_S = 2.0
"""How often a segment the remux path waits for is checked for its close, besides the recorder's close event
(which makes it due at once): what is on disk decides when an event was lost."""
JOIN_LEAD_SEGMENTS = 2
"""The booking's job starts this many segment lengths before its end (the streaming join needs one)."""


def closed_on_disk(path: Path, successor: bool, joined: bool, booking_over: bool = False,
                   now: float | None = None) -> bool:
    """What the files say when no event did: the booking was joined, or the writer has moved on, finished
    (the booking is over) or died. The recorder closes a segment within milliseconds of its last write."""
    if joined:
        return True
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return True
    return ((successor or booking_over) and age > CLOSED_AFTER_NEXT_S) or age > STALL_S


def segment_closed(ctx: WorkerContext, booking_id: str, path: Path, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    end = booking_end(ctx, booking_id)
    return closed_on_disk(path, _successor_exists(path), ctx.recording_on_disk(booking_id) is not None,
                          booking_over=end is not None and now > end, now=now)


def _successor_exists(path: Path) -> bool:
    idx = segment_index(path)
    return idx is not None and (path.parent / segment_name(idx + 1)).exists()


def process_part(ctx: WorkerContext, part: Part) -> None:
    owner = ctx.process_owner
    job = ctx.jobs.get(part.booking_id)
    if job is not None and (job.state != JobState.pending or job.mode == "whole"):
        ctx.jobs.finish_part(part.booking_id, part.idx, owner, PartState.gone)  # no longer needed
        return
    path = ctx.segment_file(part.booking_id, part.idx, part.file)
    if path is None:
        log.info("booking %s: segment %d gone before processing", part.booking_id, part.idx)
        ctx.jobs.finish_part(part.booking_id, part.idx, owner, PartState.gone)
        ctx.wake_all()
        return
    target = ctx.part_path(part.booking_id, part.idx)
    ctx.drop_temps(target)
    closed = part.closed or segment_closed(ctx, part.booking_id, path)
    why = _try_remux(ctx, part, path, target, closed)
    if why is None:
        return  # used as it is, or waiting for the recorder to close it
    log.info("booking %s: segment %d transcoded: %s (%s)", part.booking_id, part.idx, why.reason.value, why.detail)
    reader: TailReader | None = None
    warnings: list[str] = []
    try:
        if not (closed or segment_closed(ctx, part.booking_id, path)):
            def is_closed() -> bool:
                return ctx.jobs.is_closed(part.booking_id, part.idx) or segment_closed(ctx, part.booking_id, path)

            reader = TailReader(path, is_closed, stall_s=STALL_S, stop=ctx.stop)
        source = MediaSource(path, stream=reader)
    except FileNotFoundError:
        ctx.jobs.finish_part(part.booking_id, part.idx, owner, PartState.gone)
        ctx.wake_all()
        return
    except SourceError as exc:
        if reader is not None:
            reader.close()
        if reader is not None and not reader.complete:
            ctx.jobs.release_part(part.booking_id, part.idx, owner, delay=1.0 if reader.interrupted else 5.0)
            return
        reason = f"segment {path.name} unreadable: {exc}; skipped"
        log.warning("booking %s: %s", part.booking_id, reason)
        ctx.jobs.finish_part(part.booking_id, part.idx, owner, PartState.skipped, warnings=[reason],
                             frames_in=count_video_packets(path), frames_out=0, route=TRANSCODE,
                             route_reason=Reason.damaged_segment)
        maybe_job(ctx, part.booking_id)
        return
    try:
        _encode(ctx, part, source, target, reader, warnings, why)
    finally:
        source.close()
        if reader is not None:
            reader.close()
        release_memory()


@dataclass(frozen=True)
class _Transcode:
    """Why a segment is decoded and encoded again instead of used as it is."""

    reason: Reason
    detail: str
    header: SegmentHeader | None


def booking_logos(ctx: WorkerContext, plan: dict) -> tuple[list[LogoSpec], str, list[str]]:
    """The booking's logos as the transcode draws them, their fingerprint (what capture stamps), and problems.

    The one place a plan's logos become LogoSpecs (placed by shared/logo_layout.py, as the recorder places
    them): remux decisions and transcodes must agree on them."""
    media = ctx.media.from_objects(None, plan.get("logos", []), plan.get("placements"))
    return media.logo_specs, logo_fingerprint(media.logo_specs), list(media.problems)


def _try_remux(ctx: WorkerContext, part: Part, path: Path, target: Path, closed: bool) -> _Transcode | None:
    """Use the segment itself as the processed piece when it is already the delivered video. None when handled
    here (done, or released until the recorder closes it); else why it must be transcoded."""
    owner, booking_id = ctx.process_owner, part.booking_id
    held = ctx.held_path(booking_id, part.idx)
    if not closed and held.is_file():  # judged fit when it was linked; its header and the plan do not change
        ctx.jobs.release_part(booking_id, part.idx, owner, delay=OPEN_RECHECK_S)
        return None
    try:
        header = read_header(path)
    except HeaderUnreadable as exc:
        if not closed:
            ctx.jobs.release_part(booking_id, part.idx, owner, delay=1.0)  # header not written yet
            return None
        return _Transcode(Reason.damaged_segment, str(exc), None)
    if not header.stamped:
        return _Transcode(Reason.remuxed_source, "no capture stamp: the camera's packets were copied", header)
    assert header.format_json is not None
    try:
        stamped_fmt = OutputFormat.from_json(header.format_json)
    except (ValueError, KeyError, TypeError) as exc:
        return _Transcode(Reason.damaged_segment, f"unreadable format stamp: {exc}", header)
    plan = _plan(ctx, part, lambda: stamped_fmt)
    fmt = OutputFormat.from_json(plan["fmt"])
    _specs, fingerprint, warnings = booking_logos(ctx, plan)
    blocker = remux_blocker(header, fmt, fingerprint, None, None)
    prepared = None
    if blocker is None:
        media = ctx.media.from_objects(plan.get("intro"), [])
        warnings.extend(media.problems)
        if media.intro is not None:
            with ctx.encode_slot:  # prepared once per (intro, format), normally at the booking's first segment
                prepared, cached = prepared_intro(media.intro, fmt, ctx.intros, warnings)
            if not cached:
                release_memory()
        if prepared is not None:
            blocker = remux_blocker(header, fmt, fingerprint, prepared.extradata, intro_time_base(prepared.path))
    if blocker is not None:
        return _Transcode(blocker[0], blocker[1], header)
    ctx.intros.remember_format(fmt)
    if not closed:
        with contextlib.suppress(FileNotFoundError):  # gone: the next claim finds it closed, or gone
            link_piece(path, held)
        ctx.jobs.release_part(booking_id, part.idx, owner, delay=OPEN_RECHECK_S)
        return None
    check = check_packets(held if held.is_file() else path)
    if check.problem is not None:
        return _Transcode(Reason.damaged_segment, f"{path.name}: {check.problem}", header)
    try:
        if held.is_file():
            os.replace(held, target)
            fsync_dir(target.parent)
        else:
            link_piece(path, target)
    except FileNotFoundError:
        ctx.jobs.finish_part(booking_id, part.idx, owner, PartState.gone)
        ctx.wake_all()
        return None
    failpoints.reached("remux_linked")
    fps = float(fmt.rate)
    first = header.first_capture.timestamp() if header.first_capture else part.start_at
    end_at = first + check.last_s + 1 / fps if first is not None else part.end_at  # the last frame's end
    ctx.jobs.finish_part(booking_id, part.idx, owner, PartState.done, frames_in=check.packets,
                         frames_out=check.packets, output=target.relative_to(ctx.settings.processed_dir).as_posix(),
                         fmt_key=fmt.key, has_audio=False, warnings=warnings, start_at=first, end_at=end_at,
                         closed=True, route=REMUX, route_reason=None)
    _report(ctx, booking_id, plan, end_at, REMUX, None)
    log.info("booking %s: segment %d used as it is (%d frames)", booking_id, part.idx, check.packets)
    maybe_job(ctx, booking_id)
    return None


def _report(ctx: WorkerContext, booking_id: str, plan: dict, reached: float | None, route: str,
            reason: str | None) -> None:
    end, start = booking_end(ctx, booking_id), plan.get("start")
    if reached is None or end is None or start is None or end <= start:
        return
    ctx.progress(booking_id, min(99.0, 100 * (reached - start) / (end - start)), 0.0, route, reason)


def _encode(ctx: WorkerContext, part: Part, source: MediaSource, target: Path, reader: TailReader | None,
            warnings: list[str], why: _Transcode) -> None:
    owner = ctx.process_owner
    booking_id = part.booking_id
    plan = _plan(ctx, part, lambda: recording_format(source, ctx.encode, warnings))
    fmt = OutputFormat.from_json(plan["fmt"])
    media = ctx.media.from_objects(plan.get("intro"), [])
    specs, fingerprint, problems = booking_logos(ctx, plan)
    warnings.extend(media.problems + problems)
    header = why.header
    if header is not None and header.stamped and header.logos not in (fingerprint, NO_LOGOS) and specs:
        warnings.append("logo: the recording carries other logos drawn at capture; the booking's are drawn over them")
    logos = prepared_logos(logos_to_draw(header, specs, fingerprint), fmt, warnings)
    ctx.intros.remember_format(fmt)
    started_at = capture_start(source.container)
    first = started_at.timestamp() if started_at else part.start_at
    end, start = booking_end(ctx, booking_id), plan.get("start")
    seg_s = ctx.settings.segment_seconds

    def progress(percent: float, fps: float) -> None:
        """Percent of the whole booking, from where this segment sits in it."""
        if first is not None and end is not None and start is not None and end > start:
            percent = 100 * (first - start + percent / 100 * seg_s) / (end - start)
        ctx.progress(booking_id, min(99.0, percent), fps, TRANSCODE, why.reason.value)

    try:
        with ctx.encode_slot:
            if media.intro is not None and not ctx.intros.has(media.intro, fmt):
                _prepare_intro(ctx, booking_id, media.intro, fmt)
            result = encode_part(source, target, fmt, logos, warnings, progress,
                                 expected_frames=max(1, round(seg_s * float(fmt.rate))))
    except RecordingUnreadable as exc:
        if reader is not None and not reader.complete:
            ctx.jobs.release_part(booking_id, part.idx, owner, delay=1.0)
            return
        reason = f"segment {Path(part.file).name} unreadable: {exc}; skipped"
        ctx.jobs.finish_part(booking_id, part.idx, owner, PartState.skipped, warnings=[*warnings, reason],
                             frames_in=source.video_packets, frames_out=0, route=TRANSCODE,
                             route_reason=Reason.damaged_segment)
        maybe_job(ctx, booking_id)
        return
    except Exception as exc:
        log.exception("booking %s: segment %d failed", booking_id, part.idx)
        if not ctx.jobs.retry_part(booking_id, part.idx, owner, f"{type(exc).__name__}: {exc}"):
            log.error("booking %s: segment %d failed for good; the recording will be processed whole",
                      booking_id, part.idx)
        return
    if reader is not None and not reader.complete:
        target.unlink(missing_ok=True)  # cut short: done again once the segment is complete
        ctx.jobs.release_part(booking_id, part.idx, owner, delay=1.0 if reader.interrupted else 5.0)
        return
    start_at = first
    end_at = (first + result.span_s) if first is not None else part.end_at
    ctx.jobs.finish_part(booking_id, part.idx, owner, PartState.done, frames_in=result.frames_in,
                         frames_out=result.frames_out, output=target.relative_to(ctx.settings.processed_dir).as_posix(),
                         fmt_key=fmt.key, has_audio=result.has_audio, warnings=warnings, start_at=start_at,
                         end_at=end_at, closed=True, route=TRANSCODE, route_reason=why.reason)
    log.info("booking %s: segment %d processed (%d frames)", booking_id, part.idx, result.frames_out)
    maybe_job(ctx, booking_id)


def _plan(ctx: WorkerContext, part: Part, derive: Callable[[], OutputFormat]) -> dict:
    """The booking's plan: this segment's format (stamped by capture, or derived from its first frame) and the
    user's current media, unless an earlier segment fixed it."""
    plan = ctx.jobs.plan(part.booking_id)
    if plan is not None:
        return plan
    fmt = derive()
    user = part.user_id or booking_user(ctx, part.booking_id)
    media = ctx.media.sync_user(user) if user else None
    booking = ctx.store.get_booking(part.booking_id)
    proposal = {
        "fmt": fmt.to_json(),
        "intro": media.intro_object if media and media.intro else None,
        "logos": media.logo_objects if media else [],
        "placements": media.logo_placements if media else [],
        "start": booking.start_time.timestamp() if booking else part.start_at,
    }
    stored = ctx.jobs.plan(part.booking_id, proposal)
    assert stored is not None
    return stored


def _prepare_intro(ctx: WorkerContext, booking_id: str, intro: Path, fmt: OutputFormat) -> None:
    """While the booking runs, so the final join never waits for it."""
    try:
        ctx.intros.get(intro, fmt)
    except Exception as exc:  # reported by the join, where it matters
        log.info("booking %s: intro not prepared: %s", booking_id, exc)


def maybe_job(ctx: WorkerContext, booking_id: str) -> None:
    """Create the booking's job once its end is near: its join then streams along with the last segments
    (finish_step.py), and is complete moments after the last one is processed."""
    parts = ctx.jobs.parts(booking_id)
    plan = ctx.jobs.plan(booking_id)
    fps = float(OutputFormat.from_json(plan["fmt"]).rate) if plan else None
    end = booking_end(ctx, booking_id)
    now = time.time()
    near = plan is not None and end is not None and now >= end - JOIN_LEAD_SEGMENTS * ctx.settings.segment_seconds
    if near or recording_over(parts, end, fps, now):
        user = next((p.user_id for p in parts if p.user_id), None) or booking_user(ctx, booking_id)
        if user and ctx.jobs.add(booking_id, user):
            log.info("booking %s: its video is assembled from here", booking_id)
    ctx.wake_all()
