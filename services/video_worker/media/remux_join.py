"""The finished video from pieces encoded earlier: the prepared intro, then each processed segment, by remux.

No frame is decoded or encoded here. Every piece was encoded at the same OutputFormat, starts on an
IDR frame and carries identical parameter sets, so their packets concatenate once their timestamps are
shifted onto one constant-rate timeline. The output carries the format's display matrix (`fmt.rotation`);
a piece whose own matrix differs (its pixels meant to be shown turned otherwise) is a mismatch.
The intro's audio is copied, then extended with copies of its silent frame (audio_copy.py).
The moov is written in front in one pass, into space reserved up front.

With `splice=True` the output is kept as a splice (splice_sink.py): the muxer runs the same, but only
the head it writes (ftyp, moov) and the audio's few bytes are stored; the video's bytes stay the
intro's and the segments' own, hard-linked. Byte-identical to the plain file, without writing the
recording a second time. When the muxer's output cannot be shown to be head + those bytes, the plain
file is written instead (a streamed join stops and is joined again later).

Pieces may be handed over while the booking still runs (`pieces` is any iterable, possibly waiting for
the next segment): the join then streams along with the recording, syncs what it wrote after each
piece, and at the booking's end only the last segment and the index remain to write.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av

from services.video_worker.media.audio_copy import AudioCopier, SilenceUnavailable
from services.video_worker.media.audio_track import AudioTrack
from services.video_worker.media.intro import PreparedIntro
from services.video_worker.media.process import OUTPUT_MODE, decode_intro_audio
from services.video_worker.media.splice_sink import Ledger, PayloadSink, SpliceUnfit, TappedContainer, build_splice
from services.video_worker.media.video_out import samples_at
from shared import failpoints
from shared.atomic import atomic_path
from shared.recordings.timeline import first_capture
from shared.video_format import OutputFormat, carry_rotation, display_rotation

log = logging.getLogger(__name__)

MOOV_BYTES_PER_VIDEO_FRAME = 24  # stsz 4 + ctts 8 + stts/stss/stco share, with a margin
MOOV_BYTES_PER_AUDIO_FRAME = 12
MOOV_BYTES_FIXED = 64 * 1024
MAX_GAP_S = 2
"""Capture gaps up to this long are kept in the joined timeline (the frame before shows on); longer ones close."""


class JoinMismatch(Exception):
    """The pieces cannot be joined by copy (different encoder parameters, time bases or overlapping times)."""


class JoinAborted(Exception):
    """The caller's final check refused the result (nothing is left behind)."""


@dataclass
class JoinResult:
    output: Path
    frames: int
    intro_frames: int
    duration_s: float
    has_audio: bool
    pieces: int = 0


def moov_reserve(frames: int, fmt: OutputFormat, intro: PreparedIntro | None) -> int:
    audio_frames = 0
    if intro is not None and intro.audio_rate:
        audio_frames = samples_at(frames, fmt.rate, intro.audio_rate) // 1024 + 8
    return MOOV_BYTES_FIXED + MOOV_BYTES_PER_VIDEO_FRAME * frames + MOOV_BYTES_PER_AUDIO_FRAME * audio_frames


def _frames(path: Path) -> int:
    """Video frames of a piece: from its index, or counted (a fragmented MP4, as the recorder writes its
    segments, has no frame count in its header: about 20 ms of demux per 10 s of 1080p)."""
    with av.open(str(path)) as c:
        if not c.streams.video:
            return 0
        stream = c.streams.video[0]
        return int(stream.frames or 0) or sum(1 for packet in c.demux(stream) if packet.size)


def piece_rotation(path: Path) -> int | None:
    """Clockwise display rotation of a piece, from its first decoded frame (PyAV shows the matrix on frames).

    None when no frame decodes: the copy itself then tells what is wrong with the piece.
    """
    try:
        with av.open(str(path)) as c:
            for frame in c.decode(c.streams.video[0]):
                return display_rotation(frame)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        pass
    return None


def join_parts(output: Path, intro: PreparedIntro | None, parts: Iterable[Path], fmt: OutputFormat, *,
               expected_frames: int | None = None, sync: bool = False,
               accept: Callable[[JoinResult], bool] | None = None, splice: bool = False) -> JoinResult:
    """Write `output` (atomically) = intro + parts. Raises JoinMismatch when they cannot be joined by copy.

    `expected_frames` sizes the index's reserved space when `parts` is not a list (counted otherwise);
    `sync` flushes the file to disk after every piece; `accept(result)` may refuse the finished result
    (JoinAborted) before it is renamed into place; `splice` keeps it as a splice when it can.
    """
    known = isinstance(parts, Sequence)
    if known:
        total = (intro.frames if intro else 0) + sum(_frames(p) for p in parts)  # type: ignore[union-attr]
    else:
        total = int((expected_frames or 0) * 1.25) + 300
    reserve = moov_reserve(total, fmt, intro)
    if splice:
        try:
            return _join_splice(output, intro, parts, fmt, reserve, accept)
        except SpliceUnfit as exc:
            if not known:
                raise JoinAborted(f"not kept as a splice: {exc}") from exc
            log.warning("join: %s; writing the video as a plain file", exc)
    with atomic_path(output, suffix=".mp4.tmp") as tmp:
        try:
            result = _write(tmp, intro, parts, fmt, {"moov_size": str(reserve)}, sync)
        except (av.FFmpegError, ValueError) as exc:  # the reserve was too small
            if not known:
                raise JoinMismatch(f"index did not fit the {reserve} bytes reserved ({exc})") from exc
            log.warning("join: moov did not fit %d bytes (%s); writing it with a second pass", reserve, exc)
            result = _write(tmp, intro, parts, fmt, {"movflags": "+faststart"}, sync)
        if accept is not None and not accept(result):
            raise JoinAborted("refused by the caller's check")
        os.chmod(tmp, OUTPUT_MODE)
    result.output = output
    return result


def _join_splice(output: Path, intro: PreparedIntro | None, parts: Iterable[Path], fmt: OutputFormat,
                 reserve: int, accept: Callable[[JoinResult], bool] | None) -> JoinResult:
    sink = PayloadSink()
    ledger = Ledger()
    container = av.open(sink, "w", format="mp4", options={"moov_size": str(reserve)})
    try:
        joined = _Joiner(TappedContainer(container, ledger), intro, fmt)  # type: ignore[arg-type]
        for path in itertools.chain([intro.path] if intro else [], parts):  # lazily: pieces may still be coming
            ledger.source = path
            joined.add(path)
        if joined.pieces == 0:
            raise JoinMismatch("nothing to join")
        joined.finish()
        streams = list(container.streams)
        finishing = time.monotonic()
        try:
            container.close()
        except (av.FFmpegError, ValueError) as exc:
            raise SpliceUnfit(f"the index did not fit the {reserve} bytes reserved ({exc})") from exc
        log.info("join: muxer closed in %.2fs", time.monotonic() - finishing)
    except BaseException:
        with contextlib.suppress(Exception):
            container.close()
        raise
    finally:
        ledger.close()
    closed = time.monotonic()
    builder = build_splice(output, sink, ledger, streams)
    built = time.monotonic()
    result = JoinResult(output=builder.dir, frames=joined.frames, intro_frames=joined.intro_frames,
                        duration_s=joined.position / float(fmt.rate), has_audio=joined.has_audio,
                        pieces=joined.pieces)
    try:
        if accept is not None and not accept(result):
            raise JoinAborted("refused by the caller's check")
        builder.commit()
    except BaseException:
        builder.abort()
        raise
    log.info("join: kept as a splice (%d byte ranges, %d bytes written for its index and audio); built in "
             "%.2fs, placed in %.2fs", len(builder.spans), sink.payload_start + len(ledger.generated),
             built - closed, time.monotonic() - built)
    result.output = output
    return result


def _write(tmp: Path, intro: PreparedIntro | None, parts: Iterable[Path], fmt: OutputFormat,
           options: dict[str, str], sync: bool) -> JoinResult:
    container = av.open(str(tmp), "w", format="mp4", options=options)
    syncer = open(tmp, "rb") if sync else None  # noqa: SIM115 - closed below; fsync needs any fd of the file
    try:
        joined = _Joiner(container, intro, fmt)
        for path in ([intro.path] if intro else []):
            joined.add(path)
        for path in parts:
            joined.add(path)
            if syncer is not None:
                os.fsync(syncer.fileno())
        if joined.pieces == 0:
            raise JoinMismatch("nothing to join")
        joined.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            container.close()
        raise
    finally:
        if syncer is not None:
            syncer.close()
    container.close()
    return JoinResult(output=tmp, frames=joined.frames, intro_frames=joined.intro_frames,
                      duration_s=joined.position / float(fmt.rate), has_audio=joined.has_audio, pieces=joined.pieces)


class _Joiner:
    """The output being assembled: one video stream from the first piece's template, the intro's audio."""

    def __init__(self, container: av.container.OutputContainer, intro: PreparedIntro | None,
                 fmt: OutputFormat) -> None:
        self.container = container
        self.intro = intro
        self.fmt = fmt
        self.stream: av.video.stream.VideoStream | None = None
        self.copier: AudioCopier | None = None
        self.track: AudioTrack | None = None
        self.rate = 0
        self.frames = 0
        self.position = 0  # end of the timeline so far, in frames (frames + any capture gaps kept)
        self.anchor: tuple[datetime, int] | None = None  # first recording piece: (capture time, its start tick)
        self.intro_frames = 0
        self.pieces = 0
        self.extradata = b""
        self.time_base = Fraction(0)
        self.step = 0
        self.last_dts: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.copier is not None or self.track is not None

    def _open(self, template: av.video.stream.VideoStream) -> None:
        """On the first piece: streams, then the header (the moov space is reserved there)."""
        self.stream = self.container.add_stream_from_template(template)
        carry_rotation(self.stream, self.fmt.rotation)
        self.extradata = bytes(template.codec_context.extradata or b"")
        self.time_base = template.time_base or Fraction(0)
        step = self.fmt.time_base / self.time_base if self.time_base else Fraction(1, 2)
        if step.denominator != 1:
            raise JoinMismatch(f"frame duration {self.fmt.time_base} is not a whole number of ticks of "
                               f"{self.time_base}")
        self.step = int(step)
        intro = self.intro
        if intro is not None and intro.audio_rate is not None:
            try:
                self.copier = AudioCopier(self.container, intro.path)
                self.rate = self.copier.rate
            except (SilenceUnavailable, av.FFmpegError, OSError) as exc:
                log.info("join: intro audio re-encoded: %s", exc)
                self.track = AudioTrack(self.container, intro.audio_rate, intro.audio_layout or "stereo",
                                        self.fmt.encode.audio_bitrate)
                self.rate = self.track.rate
        self.container.start_encoding()

    def add(self, path: Path) -> None:
        is_intro = self.pieces == 0 and self.intro is not None
        with av.open(str(path)) as src:
            if not src.streams.video:
                raise JoinMismatch(f"{path.name} has no video")
            ins = src.streams.video[0]
            if self.stream is None:
                self._open(ins)
            elif bytes(ins.codec_context.extradata or b"") != self.extradata:
                raise JoinMismatch(f"{path.name}: encoder parameters differ from the first piece's")
            elif ins.time_base != self.time_base:
                raise JoinMismatch(f"{path.name}: time base {ins.time_base} differs from {self.time_base}")
            if (turn := piece_rotation(path)) not in (None, self.fmt.rotation):
                raise JoinMismatch(f"{path.name}: display rotation {turn} differs from the video's "
                                   f"{self.fmt.rotation}")
            base = self.position * self.step
            offset: int | None = None
            for packet in src.demux(ins):
                if packet.size == 0 or packet.pts is None or packet.dts is None:
                    continue
                if offset is None:
                    offset = self._offset(base, packet.dts, None if is_intro else first_capture(src))
                packet.pts += offset
                packet.dts += offset
                if self.last_dts is not None and packet.dts <= self.last_dts:
                    raise JoinMismatch(f"{path.name}: timestamps overlap the piece before")
                self.last_dts = packet.dts
                packet.time_base = ins.time_base
                packet.stream = self.stream
                self.container.mux(packet)
                self.frames += 1
                self.position = max(self.position, -(-(packet.pts + self.step) // self.step))
                self._audio(is_intro)
                if self.frames == 1:
                    failpoints.reached("join")
        self.pieces += 1
        if is_intro:
            self.intro_frames = self.frames
            self.position = self.frames
            if self.track is not None and self.intro is not None:
                end = samples_at(self.intro_frames, self.fmt.rate, self.rate)
                decode_intro_audio(self.track, self.intro, end)
                self.track.limit = None
                self.track.cut(end)

    def _offset(self, base: int, first_dts: int, captured: datetime | None) -> int:
        """How far a piece's timestamps move. A piece starts where the timeline ends (`base`), except a
        recorder segment (its first frame's capture time stamped on it): it keeps its distance in capture
        time to the first one, so a frame the camera dropped stays a gap and the video lasts as long as the
        booking (a gap over MAX_GAP_S, e.g. a camera fault, is closed). One that would overlap starts at base."""
        if captured is None:
            return base - first_dts
        if self.anchor is None:
            self.anchor = (captured, base)
            return base - first_dts
        since, start0 = self.anchor
        start = start0 + round((captured - since).total_seconds() * self.fmt.rate) * self.step
        if base <= start <= base + MAX_GAP_S * self.fmt.rate * self.step:
            return start - first_dts
        return base - first_dts

    def _audio(self, in_intro: bool) -> None:
        pos = samples_at(self.position, self.fmt.rate, self.rate) if self.rate else 0
        if self.copier is not None:
            self.copier.advance(pos)
        elif self.track is not None and not in_intro:
            self.track.pad_to(pos)
            self.track.encode_until(pos)

    def finish(self) -> None:
        end = samples_at(self.position, self.fmt.rate, self.rate) if self.rate else 0
        if self.copier is not None:
            self.copier.finish(end)
        if self.track is not None:
            self.track.finish(end)
