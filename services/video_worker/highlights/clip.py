"""One highlight: the recording's files for its span -> a cut by packet copy -> (logos: a transcode) -> the store.

Copy when the frames already look as the full video will: the recorder blended the booking's logos at capture
(the segments' `ezrec_logos` stamp equals the booking's logos), or neither has any. Otherwise (a recorder that
does not blend, a remuxed camera, logos changed since) the cut is transcoded once with the logos, in the booking's
output format, exactly as the worker's finishing path draws them (shared/overlay.py, shared/video_format.py).

The segment being written is read as it grows (tail_reader.py) and the cut stops at the first frame after the clip's
end, so a clip is ready about a GOP after its end, not a segment after it. If the recorder joins and removes the
segments meanwhile, the joined recording is cut instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import av

from services.video_worker.booking_facts import booking_end
from services.video_worker.context import WorkerContext
from services.video_worker.highlights.cut import MOVFLAGS, CutResult, Cutter, NothingToCut
from services.video_worker.highlights.table import MAX_ATTEMPTS, ClipRow, ClipTable
from services.video_worker.media.decode import MediaSource
from services.video_worker.media.process import prepared_logos, recording_format
from services.video_worker.media.tail_reader import TailReader
from services.video_worker.media.video_out import VideoOutput, encode_recording
from services.video_worker.part_step import segment_closed
from shared import capture_stamp
from shared.atomic import atomic_path, remove_stale_temps
from shared.models import Video, highlight_video_id, storage_path_for_highlight
from shared.overlay import LogoSpec
from shared.payloads import HighlightCreated, HighlightFailed
from shared.recordings.layout import BookingDir, segment_index
from shared.recordings.timeline import FIRST_CAPTURE_KEY, first_capture
from shared.timeutil import isoformat_z, utc_now
from shared.video_format import OutputFormat

log = logging.getLogger(__name__)

WORK_DIR = "highlights"
"""Under DATA_DIR: the worker tidies PROCESSED_RECORDINGS_DIR of folders no booking job owns, so not there."""
STALE_S = 3600.0
"""A file left in the work folder this long belongs to a worker killed mid-clip (each is removed once stored)."""
POLL_S = 0.05
STALL_S = 30.0
"""No new frame and no new segment for this long while the booking should be recording: cut what there is."""
RENEW_EVERY_S = 5.0
CORNERS = ("top-right", "top-left", "bottom-right", "bottom-left")
"""Where logos go when nothing says otherwise (the worker's own default, services/video_worker/part_step.py)."""
NO_PROBE = {"probesize": "32", "analyzeduration": "0"}
"""Packets are only copied: the MP4 header says all the cut needs, so opening a file decodes no frame to probe it
(at 1080p that probing is most of a clip's CPU)."""


class RecordingGone(Exception):
    """Neither the segments nor the joined recording are on the device any more."""


@dataclass
class Made:
    video: Video
    cut: CutResult
    copied: bool
    cpu_s: float
    warnings: list[str]
    end_at: datetime
    """The clip's end as it stood when the cut passed it (a press may have moved it later since)."""


def work_dir(ctx: WorkerContext, booking_id: str) -> Path:
    return ctx.settings.data_dir / WORK_DIR / booking_id


def remove_leftovers(ctx: WorkerContext) -> None:
    """Clips a killed worker left half made (they are made again from the table)."""
    root = ctx.settings.data_dir / WORK_DIR
    for path in remove_stale_temps(root, ("*/*.mp4", "*/.*"), STALE_S):
        log.info("removed %s left by an interrupted highlight", path)
    if root.is_dir():
        for folder in root.iterdir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


class _Reading:
    """Feeds the booking's files to a Cutter in capture order, following the one still being written."""

    def __init__(self, ctx: WorkerContext, table: ClipTable, row: ClipRow, owner: str, cutter: Cutter) -> None:
        self.ctx, self.table, self.row, self.owner, self.cutter = ctx, table, row, owner, cutter
        self.dir = BookingDir(ctx.settings.raw_dir, row.booking_id)
        self.joined = ctx.raw_path(row.booking_id)
        self._renewed = self._progress = time.monotonic()

    def run(self) -> None:
        last = -1
        while not self.cutter.passed_end:
            if self.ctx.stop.is_set():
                raise InterruptedError("worker stopping")
            self._renew()
            segments = [(int(p.stem.split("-")[1]), p) for p in self.dir.segments()]
            fresh = [(i, p) for i, p in segments if i > last]
            if not segments and last < 0:
                if self.joined.is_file():
                    self._feed(self.joined, closed=True)
                    return
                if self._over():
                    raise RecordingGone(f"booking {self.row.booking_id}: no segments and no recording on the device")
                time.sleep(POLL_S)  # the recorder is opening its first segment
                continue
            if not fresh:
                if not segments and self.joined.is_file():
                    return  # joined after what was read: nothing follows
                if self._over():
                    return
                time.sleep(POLL_S)
                continue
            for index, path in fresh:
                closed = self._closed(index, path)
                if closed and not self.cutter.started and _written_before(path, self.row.start):
                    last = index  # wholly before the clip: its last frame was written before the clip starts
                    continue
                try:
                    self._feed(path, closed=closed)
                except FileNotFoundError:
                    if self.joined.is_file() and not self.cutter.started:
                        self._feed(self.joined, closed=True)  # joined and removed before we got to it
                        return
                    raise
                last = index
                self._progress = time.monotonic()
                if self.cutter.passed_end:
                    return

    def _closed(self, index: int, path: Path) -> bool:
        return self.ctx.jobs.is_closed(self.row.booking_id, index) or segment_closed(self.ctx, self.row.booking_id,
                                                                                      path)

    def _feed(self, path: Path, closed: bool) -> None:
        reader = None
        if not closed:
            index = segment_index(path)
            index = -1 if index is None else index
            reader = TailReader(path, lambda: self._renew() or self._closed(index, path), stall_s=STALL_S,
                                stop=self.ctx.stop)
        try:
            # A growing file is read as a pipe: its demuxer needs the probe to find the header's stream.
            container = av.open(reader, format="mp4") if reader is not None else av.open(str(path), options=NO_PROBE)
        except av.FFmpegError:
            if reader is not None:
                reader.close()
            log.warning("highlight %s: %s unreadable; skipped", self.row.clip_id, path.name)
            return
        try:
            self.cutter.feed(container)
        except av.FFmpegError as exc:  # a torn last fragment (kill -9 of the recorder): keep what was read
            log.warning("highlight %s: %s ends in a damaged fragment (%s)", self.row.clip_id, path.name, exc)
        finally:
            container.close()
            if reader is not None:
                reader.close()

    def _over(self) -> bool:
        """Nothing more will come for this clip: the booking ended (its last segment is closed), or a stall."""
        end = booking_end(self.ctx, self.row.booking_id)
        if end is not None and time.time() > end:
            return True
        return time.monotonic() - self._progress > STALL_S

    def _renew(self) -> None:
        now = time.monotonic()
        if now - self._renewed >= RENEW_EVERY_S:
            self._renewed = now
            self.table.renew(self.row.booking_id, self.row.clip_id, self.owner)


def _written_before(path: Path, at: datetime) -> bool:
    """A file last written before `at` holds no frame captured at or after it (frames are written after their
    capture, on the same clock), so a clip from `at` on needs nothing from it: no need to open it."""
    try:
        return path.stat().st_mtime < at.timestamp()
    except OSError:
        return False


def booking_logos(ctx: WorkerContext, booking_id: str, user_id: str) -> tuple[list[LogoSpec], list[str], str | None]:
    """The booking's logos where they are drawn (as frozen in its plan when its video is under way, else the user's
    now), the problems met fetching them, and the booking's output format when known."""
    plan = ctx.jobs.plan(booking_id)
    if plan is not None:
        placements = [plan["placements"]] if "placements" in plan else []  # plans made with per-logo placement
        media = ctx.media.from_objects(None, plan.get("logos", []), *placements)
    else:
        media = ctx.media.for_user(user_id)
    specs = getattr(media, "logo_specs", None)  # per-logo placement (issue 17) says where each is drawn
    if specs is None:
        specs = [LogoSpec(path=p, corner=CORNERS[i % len(CORNERS)]) for i, p in enumerate(media.logos[:4])]
    return list(specs), list(media.problems), plan.get("fmt") if plan else None


def transcode(cut: Path, target: Path, fmt_json: str | None, logos: list[LogoSpec], ctx: WorkerContext,
              warnings: list[str]) -> None:
    """The cut, decoded once, logos blended, encoded once in the booking's output format (+faststart)."""
    source = MediaSource(cut, with_audio=False)
    try:
        fmt = OutputFormat.from_json(fmt_json) if fmt_json else recording_format(source, ctx.encode, warnings)
        prepared = prepared_logos(logos, fmt, warnings)
        anchor = first_capture(source.container)
        with atomic_path(target, suffix=".mp4") as tmp:
            container = av.open(str(tmp), "w", format="mp4", options={"movflags": MOVFLAGS})
            try:
                if anchor is not None:
                    container.metadata[FIRST_CAPTURE_KEY] = isoformat_z(anchor)
                out = VideoOutput(container, fmt, expected_frames=1)
                encode_recording(out, source, prepared, warnings, _warn)
                out.flush()
            finally:
                container.close()
            os.chmod(tmp, 0o644)
    finally:
        source.close()


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


def make(ctx: WorkerContext, table: ClipTable, row: ClipRow, owner: str) -> Made:
    """Cut, (transcode,) store; raises on failure (the caller retries or gives up)."""
    cpu0 = resource.getrusage(resource.RUSAGE_THREAD)
    folder = work_dir(ctx, row.booking_id)
    cut_path, final = folder / f"{row.clip_id}.cut.mp4", folder / f"{row.clip_id}.mp4"

    def end_at() -> datetime:
        current = table.current(row.booking_id, row.clip_id)
        return current.end if current is not None else row.end

    ends = _Throttled(end_at, 0.25)
    cutter = Cutter(cut_path, row.start, ends)
    try:
        _Reading(ctx, table, row, owner, cutter).run()
        cut = cutter.finish()
    except BaseException:
        cutter.abort()
        raise
    logos, warnings, fmt_json = booking_logos(ctx, row.booking_id, row.user_id)
    wanted = capture_stamp.logo_fingerprint(logos)
    copied = cut.same_parameter_sets and cut.logos == {wanted}
    if copied:
        os.replace(cut_path, final)
    else:
        with ctx.encode_slot:
            transcode(cut_path, final, fmt_json, logos, ctx, warnings)
        cut_path.unlink(missing_ok=True)
    duration = (cut.last_at - cut.first_at).total_seconds() + (float(1 / cut.rate) if cut.rate else 0.0)
    path = storage_path_for_highlight(row.user_id, row.booking_id, row.clip_id)
    info = ctx.store.put_object("videos", path, final, "video/mp4")
    video = ctx.store.upsert_video(Video(
        id=highlight_video_id(row.booking_id, row.clip_id), kind="highlight", booking_id=row.booking_id,
        user_id=row.user_id, camera_id=row.camera_id, storage_path=path, size_bytes=info.size_bytes,
        duration_seconds=max(0.0, duration), uploaded_at=utc_now()))
    final.unlink(missing_ok=True)  # the store holds it now (a hard link or a copy)
    cpu1 = resource.getrusage(resource.RUSAGE_THREAD)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    cut.path = final
    return Made(video=video, cut=cut, copied=copied, cpu_s=cpu, warnings=warnings, end_at=ends.last or row.end)


class _Throttled:
    """The clip's end, read from the table at most every `every_s` (it is asked for each packet)."""

    def __init__(self, read: Callable[[], datetime], every_s: float) -> None:
        self._read, self._every = read, every_s
        self._at = 0.0
        self.last: datetime | None = None

    def __call__(self) -> datetime:
        now = time.monotonic()
        if self.last is None or now - self._at >= self._every:
            self.last, self._at = self._read(), now
        return self.last


def run_one(ctx: WorkerContext, table: ClipTable, row: ClipRow, owner: str) -> None:
    """Make one claimed clip and say how it went on the bus; never raises for the clip's own faults."""
    try:
        made = make(ctx, table, row, owner)
    except (RecordingGone, NothingToCut) as exc:
        table.fail(row, str(exc))
        _failed(ctx, row, str(exc), final=True)
        return
    except InterruptedError:
        table.retry(row, "worker stopped", 0.0)
        return
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("highlight %s of booking %s failed", row.clip_id, row.booking_id)
        if row.attempts >= MAX_ATTEMPTS:
            table.fail(row, reason)
            _failed(ctx, row, reason, final=True)
        else:
            table.retry(row, reason, min(60.0, 2.0 ** row.attempts))
            _failed(ctx, row, reason, final=False)
        return
    if not table.done(row, owner, made.video.id, made.end_at.timestamp()):
        log.info("highlight %s extended while it was cut; cutting it again", row.clip_id)
        return
    current = table.current(row.booking_id, row.clip_id) or row
    ctx.bus.publish(ctx.bus.topics.highlight_created, HighlightCreated(
        clip_id=row.clip_id, booking_id=row.booking_id, video_id=made.video.id, storage_path=made.video.storage_path,
        start_at=made.cut.first_at, end_at=made.cut.last_at, duration_s=made.video.duration_seconds,
        size_bytes=made.video.size_bytes, copied=made.copied, presses=current.presses, cpu_s=round(made.cpu_s, 4),
        worker=ctx.name))
    log.info("highlight %s of booking %s: %d frames, %.1f s, %s, %.3f CPU-s", row.clip_id, row.booking_id,
             made.cut.frames, made.video.duration_seconds, "copied" if made.copied else "transcoded", made.cpu_s)


def _failed(ctx: WorkerContext, row: ClipRow, reason: str, final: bool) -> None:
    ctx.bus.publish(ctx.bus.topics.highlight_failed, HighlightFailed(
        clip_id=row.clip_id, booking_id=row.booking_id, reason=reason[:1000], final=final, worker=ctx.name))
