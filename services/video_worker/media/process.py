"""Raw recording -> player video in-process with PyAV: the prepared intro by packet copy, then the recording
with logos, encoded once.

Two entry points share one encoder set-up (shared/video_format.py) so their outputs join by remux:
- process_video: a whole recording into a finished MP4 (the one-shot command, and the worker's fallback);
- encode_part: one recorder segment into a video-only piece (the worker's fast path, joined by remux_join.py).

Everything streams frame by frame, so memory stays flat whatever the recording length. Optional
elements (intro, logos) degrade to warnings; only a recording that yields no video frame is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av

from services.video_worker.media.audio_copy import AudioCopier, SilenceUnavailable
from services.video_worker.media.audio_track import AudioTrack
from services.video_worker.media.decode import MediaSource, SourceError
from services.video_worker.media.intro import AAC_RATES, IntroUnusable, PreparedIntro
from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.video_out import (
    ProgressFn,
    RecordingStats,
    VideoOutput,
    encode_recording,
    place_audio,
    samples_at,
)
from shared.atomic import atomic_path
from shared.overlay import LogoSpec, PreparedLogo, load_logos
from shared.video_encode import EncodeSettings
from shared.video_format import OutputFormat, derive_format

__all__ = [
    "EncodeSettings",
    "LogoSpec",
    "PartResult",
    "ProcessResult",
    "RecordingUnreadable",
    "encode_part",
    "process_video",
]

log = logging.getLogger(__name__)

OUTPUT_MODE = 0o644  # the temp file is created 0600; the finished video is meant to be shared


class RecordingUnreadable(Exception):
    """The raw recording cannot be decoded at all (no video frame could be read)."""


@dataclass
class ProcessResult:
    output: Path
    frames: int
    duration_s: float
    width: int
    height: int
    fps: float
    intro_frames: int
    has_audio: bool
    warnings: list[str]
    recording_frames: int = 0
    logos_drawn: int = 0
    dropped_frames: int = 0  # recording frames dropped to keep a constant rate
    duplicated_frames: int = 0  # extra copies emitted to fill gaps in the recording
    elapsed_s: float = 0.0
    logo_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h per drawn logo
    intro_cached: bool = False  # the intro came from the cache (nothing encoded for it)
    input_packets: int = 0  # video packets of the recording


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


def open_recording(path: Path, *, frame_threads: bool = False) -> MediaSource:
    try:
        return MediaSource(Path(path), frame_threads=frame_threads)
    except SourceError as exc:
        raise RecordingUnreadable(str(exc)) from exc


def recording_format(recording: MediaSource, encode: EncodeSettings, warnings: list[str]) -> OutputFormat:
    fmt, problem = derive_format(recording.first, recording.frame_rate(), encode)
    if problem is not None:
        _warn(warnings, problem)
    return fmt


def prepared_intro(intro: Path | None, fmt: OutputFormat, cache: IntroCache, warnings: list[str], *,
                   frame_threads: bool = False) -> tuple[PreparedIntro | None, bool]:
    """(prepared intro or None, whether it was cached); an unusable intro becomes a warning."""
    if intro is None:
        return None, False
    try:
        prepared, cached = cache.get(Path(intro), fmt, frame_threads=frame_threads)
    except IntroUnusable as exc:
        _warn(warnings, str(exc))
        return None, False
    except Exception as exc:  # an intro must never fail the job
        _warn(warnings, f"intro unusable: {type(exc).__name__}: {exc}; delivered without intro")
        return None, False
    for warning in prepared.warnings:
        _warn(warnings, warning)
    return prepared, cached


def prepared_logos(specs: Sequence[LogoSpec], fmt: OutputFormat, warnings: list[str]) -> list[PreparedLogo]:
    return load_logos(specs, fmt.width, fmt.height, warnings, bt709=fmt.bt709, full_range=fmt.full_range,
                      rotation=fmt.rotation)


# --------------------------------------------------------------------------------------- whole file


def process_video(
    raw: Path,
    output: Path,
    *,
    intro: Path | None = None,
    logos: Sequence[LogoSpec] = (),
    encode: EncodeSettings = EncodeSettings(),  # noqa: B008 - frozen dataclass, safe as a default
    progress: ProgressFn | None = None,
    intro_cache: IntroCache | None = None,
    frame_threads: bool = False,
) -> ProcessResult:
    """Encode `raw` (with `intro` first and `logos` on top) to `output`, atomically.

    The intro is taken from `intro_cache` (prepared there first if needed); without a cache it is
    prepared in a temporary directory. progress(percent 0..100, processing fps) is called at most
    every 0.5 s and once at 100. Raises RecordingUnreadable if the recording has no decodable video;
    any other exception leaves `output` untouched and no temp file behind. `frame_threads`: decode the
    recording (and an intro prepared here) with frame threads too (faster on a source encoded without
    slices; a few frames more memory): for the one-shot command, not the worker's fallback on a Pi.
    """
    started = time.monotonic()
    recording = open_recording(Path(raw), frame_threads=frame_threads)
    warnings: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: recording.close())
        fmt = recording_format(recording, encode, warnings)
        if intro is not None and intro_cache is None:
            intro_cache = IntroCache(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ezrec-intro-"))))
        prepared, cached = (prepared_intro(intro, fmt, intro_cache, warnings, frame_threads=frame_threads)
                            if intro_cache else (None, False))
        logo_list = prepared_logos(logos, fmt, warnings)
        output = Path(output)
        with atomic_path(output, suffix=".mp4.tmp") as tmp:
            result = _Whole(recording, prepared, fmt, logo_list, warnings, progress).run(tmp)
            os.chmod(tmp, OUTPUT_MODE)
        result.output = output
        result.intro_cached = cached
        result.elapsed_s = time.monotonic() - started
        return result


@dataclass
class _Whole:
    recording: MediaSource
    prepared: PreparedIntro | None
    fmt: OutputFormat
    logos: list[PreparedLogo]
    warnings: list[str]
    progress: ProgressFn | None

    def run(self, tmp: Path) -> ProcessResult:
        rec, fmt, prepared = self.recording, self.fmt, self.prepared
        intro_estimate = prepared.frames if prepared else 0
        expected = intro_estimate + max(1, round(rec.duration * float(fmt.rate)))
        container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            out = VideoOutput(container, fmt, progress=self.progress, expected_frames=expected)
            track, copier = self._audio(container, out)
            container.start_encoding()
            intro_frames = self._intro(out) if prepared else 0
            if track is not None:
                if prepared is not None and prepared.has_audio:
                    decode_intro_audio(track, prepared, samples_at(intro_frames, fmt.rate, track.rate))
                track.limit = None
                track.cut(samples_at(intro_frames, fmt.rate, track.rate))
            stats = encode_recording(out, rec, self.logos, self.warnings, _warn, track)
            out.flush()
            if track is not None:
                track.finish(samples_at(out.next_pts, fmt.rate, track.rate))
            if copier is not None:
                copier.finish(samples_at(out.next_pts, fmt.rate, copier.rate))
        except BaseException:
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()
        if rec.errors:
            _warn(self.warnings, f"recording: {rec.errors} unreadable packet(s) skipped ({rec.first_error})")
        out.report(100.0)
        return self._result(tmp, out, intro_frames, stats, track is not None or copier is not None)

    def _result(self, tmp: Path, out: VideoOutput, intro_frames: int, stats: RecordingStats,
                has_audio: bool) -> ProcessResult:
        fmt = self.fmt
        return ProcessResult(
            output=tmp, frames=out.next_pts, duration_s=out.next_pts / float(fmt.rate), width=fmt.width,
            height=fmt.height, fps=float(fmt.rate), intro_frames=intro_frames, has_audio=has_audio,
            warnings=self.warnings, recording_frames=stats.frames, logos_drawn=len(self.logos),
            dropped_frames=stats.dropped, duplicated_frames=stats.duplicated,
            logo_boxes=[(lg.rect.x, lg.rect.y, lg.rect.w, lg.rect.h) for lg in self.logos],
            input_packets=self.recording.video_packets,
        )

    def _audio(self, container: av.container.OutputContainer,
               out: VideoOutput) -> tuple[AudioTrack | None, AudioCopier | None]:
        """Copy the intro's audio when only the intro has any; encode a track when the recording has audio."""
        rec, prepared, fmt = self.recording, self.prepared, self.fmt
        intro_audio = prepared is not None and prepared.has_audio
        if rec.audio is None and not intro_audio:
            return None, None
        if rec.audio is None and prepared is not None:
            try:
                copier = AudioCopier(container, prepared.path)
            except (SilenceUnavailable, av.FFmpegError, OSError) as exc:
                log.info("intro audio re-encoded: %s", exc)
            else:
                out.on_frame = lambda n: copier.advance(samples_at(n, fmt.rate, copier.rate))
                return None, copier
        if rec.audio is not None:  # the track's format follows the recording's audio
            rate = rec.audio.codec_context.sample_rate or 48_000
            stereo = (rec.audio.codec_context.channels or 1) > 1
            stereo = stereo or (prepared is not None and prepared.audio_layout == "stereo")
        else:
            assert prepared is not None and prepared.audio_rate is not None
            rate, stereo = prepared.audio_rate, prepared.audio_layout == "stereo"
        rate = rate if rate in AAC_RATES else 48_000
        track = AudioTrack(container, rate, "stereo" if stereo else "mono", fmt.encode.audio_bitrate)
        out.on_frame = lambda n: track.encode_until(samples_at(n, fmt.rate, track.rate))
        return track, None

    def _intro(self, out: VideoOutput) -> int:
        """The prepared intro by packet copy; re-encoded from its frames if this encoder's parameters differ."""
        prepared = self.prepared
        assert prepared is not None
        if out.extradata == prepared.extradata:
            return out.copy_from(prepared.path)
        _warn(self.warnings, "intro re-encoded: the cached intro's encoder parameters differ from this encoder's")
        with av.open(str(prepared.path)) as src:
            for frame in src.decode(video=0):
                out.emit(frame)
        return out.next_pts


def decode_intro_audio(track: AudioTrack, prepared: PreparedIntro, end: int) -> None:
    """The intro's audio into an encoded track: decoded from the prepared intro, exactly `end` samples."""
    track.limit = end
    resampler = track.resampler()
    with av.open(str(prepared.path)) as src:
        for frame in src.decode(audio=0):
            place_audio(track, resampler, frame, 0, 0.0)
            track.encode_until(end)
    with contextlib.suppress(av.FFmpegError, ValueError):
        place_audio(track, resampler, None, 0, 0.0)


# --------------------------------------------------------------------------------------------- parts


@dataclass
class PartResult:
    output: Path
    frames_out: int  # frames in the piece (constant rate)
    frames_in: int  # video packets read from the segment (what the recorder's packet-copy join keeps)
    span_s: float  # presentation time of the segment's last frame after its first
    has_audio: bool
    warnings: list[str]


def encode_part(source: MediaSource, output: Path, fmt: OutputFormat, logos: list[PreparedLogo],
                warnings: list[str], progress: ProgressFn | None = None, expected_frames: int = 1) -> PartResult:
    """One segment into a video-only piece at `fmt` (frames 0..n-1, starting on a keyframe), atomically."""
    with atomic_path(output, suffix=".mp4.tmp") as tmp:
        container = av.open(str(tmp), "w", format="mp4")
        try:
            out = VideoOutput(container, fmt, progress=progress, expected_frames=expected_frames)
            stats = encode_recording(out, source, logos, warnings, _warn)
            out.flush()
        except BaseException:
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()
        if stats.frames == 0:
            raise RecordingUnreadable(f"{source.path.name}: no decodable video frame")
        os.chmod(tmp, OUTPUT_MODE)
    if source.errors:
        _warn(warnings, f"segment {source.path.name}: {source.errors} unreadable packet(s) skipped "
                        f"({source.first_error})")
    return PartResult(output=output, frames_out=stats.frames, frames_in=source.video_packets,
                      span_s=stats.last_time - source.start_time if stats.last_time is not None else 0.0,
                      has_audio=source.audio is not None, warnings=warnings)
