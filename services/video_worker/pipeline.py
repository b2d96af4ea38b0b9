"""Raw recording -> player video in one in-process PyAV pass: intro, then the recording with logos.

Everything streams frame by frame (decode -> blend -> encode -> mux), so memory stays flat whatever
the recording length. Optional elements (intro, logos) degrade to warnings; only a recording that
yields no video frame at all is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av

from shared.atomic import atomic_path

from .encode import SOFTWARE_X26X, AudioTrack, EncodeSettings, add_video_stream, encoder_problem
from .intro import IntroFitter
from .overlay import FramePool, LogoSpec, PreparedLogo, blend_logos, load_logos
from .source import MediaSource, SourceError

__all__ = [
    "EncodeSettings",
    "LogoSpec",
    "ProcessResult",
    "RecordingUnreadable",
    "process_video",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, float], None]
T = TypeVar("T")

FALLBACK_CODEC = "libx264"
OUTPUT_MODE = 0o644  # the temp file is created 0600; the finished video is meant to be shared
PROGRESS_INTERVAL_S = 0.5
MAX_TIMESTAMP_JUMP_S = 2.0
"""A bigger jump between recording frames is a broken clock, not missing frames: no filling."""
AUDIO_GAP_LAG_S = 2.0
"""Recording audio this far behind the video is considered missing and replaced by silence."""
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AVCOL_RANGE_JPEG = 2
AVCOL_SPC_BT709 = 1
UNSPECIFIED_TAGS = (0, 2)  # 0 = RGB/reserved, 2 = unspecified: nothing worth copying


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


def process_video(
    raw: Path,
    output: Path,
    *,
    intro: Path | None = None,
    logos: Sequence[LogoSpec] = (),
    encode: EncodeSettings = EncodeSettings(),  # noqa: B008 - frozen dataclass, safe as a default
    progress: ProgressFn | None = None,
) -> ProcessResult:
    """Encode `raw` (with `intro` first and `logos` on top) to `output`, atomically.

    progress(percent 0..100, processing fps) is called at most every 0.5 s and once at 100.
    Raises RecordingUnreadable if the recording has no decodable video; any other exception leaves
    `output` untouched and no temp file behind.
    """
    try:
        recording = MediaSource(Path(raw))
    except SourceError as exc:
        raise RecordingUnreadable(str(exc)) from exc
    warnings: list[str] = []
    intro_source: MediaSource | None = None
    try:
        if intro is not None:
            try:
                intro_source = MediaSource(Path(intro))
            except SourceError as exc:
                _warn(warnings, f"intro unreadable: {exc}; delivered without intro")
            except Exception as exc:  # an intro must never fail the job
                _warn(warnings, f"intro unreadable: {type(exc).__name__}: {exc}; delivered without intro")
        job = _Job(recording, intro_source, logos, encode, progress, warnings)
        output = Path(output)
        with atomic_path(output, suffix=".mp4.tmp") as tmp:
            result = job.run(tmp)
            os.chmod(tmp, OUTPUT_MODE)
        result.output = output
        return result
    finally:
        recording.close()
        if intro_source is not None:
            intro_source.close()


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


def _guarded(items: Iterator[T], on_error: Callable[[Exception], None]) -> Iterator[T]:
    """Stop (instead of failing) when reading an input raises something unexpected."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:  # input-side only: errors in the consumer's body are not caught here
            on_error(exc)
            return
        yield item


@dataclass
class _Job:
    """State of one encode: output position, streams and counters shared by the intro and recording parts."""

    recording: MediaSource
    intro: MediaSource | None
    logo_specs: Sequence[LogoSpec]
    settings: EncodeSettings
    progress: ProgressFn | None
    warnings: list[str]
    next_pts: int = 0
    dropped: int = 0
    duplicated: int = 0
    logos: list[PreparedLogo] = field(default_factory=list)

    def run(self, tmp: Path) -> ProcessResult:
        started = time.monotonic()
        rec = self.recording
        first = rec.first
        self.width, self.height = first.width & ~1, first.height & ~1
        self.rate = rec.frame_rate()
        self.time_base = Fraction(self.rate.denominator, self.rate.numerator)
        self.pix_fmt, full_range = self._working_format(first)
        problem = encoder_problem(self.settings, self.width, self.height, self.rate, self.pix_fmt)
        if problem is not None:
            _warn(self.warnings, f"encoder {self.settings.codec} unusable ({problem}); used {FALLBACK_CODEC}")
            self.settings = replace(self.settings, codec=FALLBACK_CODEC)
        bt709 = first.colorspace == AVCOL_SPC_BT709 or (first.colorspace in UNSPECIFIED_TAGS and self.height >= 720)
        self.logos = load_logos(
            self.logo_specs, self.width, self.height, self.warnings, bt709=bt709, full_range=full_range
        )
        self.pool = FramePool(self.width, self.height, self.pix_fmt)
        expected = self._expected_frames()
        self._started, self._last_report, self._expected = started, started, expected

        container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            self.out = container
            self.video = add_video_stream(
                container,
                self.settings,
                self.width,
                self.height,
                self.rate,
                self.pix_fmt,
                self._colour_tags(first, full_range),
            )
            self.audio = self._audio_track(container)
            intro_frames = self._encode_intro(full_range)
            if self.audio is not None:
                self.audio.limit = None
                self.audio.cut(self._samples(self.next_pts))
            self._encode_recording()
            container.mux(self.video.encode(None))
            if self.audio is not None:
                self.audio.finish(self._samples(self.next_pts))
        except BaseException:
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()

        elapsed = time.monotonic() - started
        if rec.errors:
            _warn(self.warnings, f"recording: {rec.errors} unreadable packet(s) skipped ({rec.first_error})")
        if self.progress is not None:
            self.progress(100.0, self.next_pts / elapsed if elapsed > 0 else 0.0)
        return ProcessResult(
            output=tmp,
            frames=self.next_pts,
            duration_s=self.next_pts / float(self.rate),
            width=self.width,
            height=self.height,
            fps=float(self.rate),
            intro_frames=intro_frames,
            has_audio=self.audio is not None,
            warnings=self.warnings,
            recording_frames=self.next_pts - intro_frames,
            logos_drawn=len(self.logos),
            dropped_frames=self.dropped,
            duplicated_frames=self.duplicated,
            elapsed_s=elapsed,
            logo_boxes=[(logo.rect.x, logo.rect.y, logo.rect.w, logo.rect.h) for logo in self.logos],
        )

    # ----------------------------------------------------------------------------------- setup

    def _working_format(self, first: av.VideoFrame) -> tuple[str, bool]:
        """Pixel format frames are blended and encoded in, chosen so decoded frames need no conversion."""
        name = first.format.name
        if name == "yuvj420p" and self.settings.codec in SOFTWARE_X26X:
            return "yuvj420p", True
        if name == "yuv420p":
            return "yuv420p", first.color_range == AVCOL_RANGE_JPEG
        return "yuv420p", False  # anything else is converted per frame (rare: 4:2:2 / 4:4:4 / odd sizes)

    @staticmethod
    def _colour_tags(first: av.VideoFrame, full_range: bool) -> dict[str, int]:
        tags = {"color_range": AVCOL_RANGE_JPEG if full_range else 1}
        for name in ("colorspace", "color_primaries", "color_trc"):
            value = getattr(first, name, 2)
            if value not in UNSPECIFIED_TAGS:
                tags[name] = value
        return tags

    def _audio_track(self, container: av.container.OutputContainer) -> AudioTrack | None:
        """AAC whenever either part has audio; its format follows the recording's audio if present."""
        streams = [s.audio for s in (self.recording, self.intro) if s is not None and s.audio is not None]
        if not streams:
            return None
        rate = streams[0].codec_context.sample_rate or 48_000
        if rate not in AAC_RATES:
            rate = 48_000
        stereo = any((s.codec_context.channels or 1) > 1 for s in streams)
        return AudioTrack(container, rate, "stereo" if stereo else "mono", self.settings.audio_bitrate)

    def _expected_frames(self) -> int:
        total = self.recording.duration
        if self.intro is not None:
            total += self.intro.duration
        return max(1, round(total * float(self.rate)))

    def _samples(self, frames: int) -> int:
        """Audio sample position of a video frame index, in exact integer arithmetic."""
        assert self.audio is not None
        num = frames * self.rate.denominator * self.audio.rate
        return (2 * num + self.rate.numerator) // (2 * self.rate.numerator)

    # ---------------------------------------------------------------------------------- output

    def _emit(self, frame: av.VideoFrame) -> None:
        frame.pts = self.next_pts
        frame.time_base = self.time_base
        frame.pict_type = 0  # libx264 would otherwise obey the source's I/P/B decisions
        self.out.mux(self.video.encode(frame))
        self.next_pts += 1
        if self.audio is not None:
            self.audio.encode_until(self._samples(self.next_pts))
        if self.progress is not None:
            now = time.monotonic()
            if now - self._last_report >= PROGRESS_INTERVAL_S:
                self._last_report = now
                percent = min(99.9, 100.0 * self.next_pts / self._expected)
                self.progress(percent, self.next_pts / max(now - self._started, 1e-6))

    def _place_audio(self, resampler: av.AudioResampler, frame: av.AudioFrame | None, base: int, t0: float) -> None:
        assert self.audio is not None
        for out in resampler.resample(frame):
            pos = None if out.time is None else base + round((out.time - t0) * self.audio.rate)
            self.audio.place(out.to_ndarray(), pos)

    # ----------------------------------------------------------------------------------- intro

    def _encode_intro(self, full_range: bool) -> int:
        """Encode the intro; a failure part-way keeps what was encoded and carries on with a warning."""
        src = self.intro
        if src is None:
            return 0
        failure: list[str] = []

        def fail(where: str, exc: Exception) -> None:
            failure.append(f"{where}: {type(exc).__name__}: {exc}")

        try:
            fitter = IntroFitter(src.first, self.width, self.height, self.rate, self.pix_fmt, full_range)
        except Exception as exc:  # an unusable intro must never fail the job
            _warn(self.warnings, f"intro unusable: {type(exc).__name__}: {exc}; delivered without intro")
            return 0
        audio = self.audio if src.audio is not None else None
        resampler = audio.resampler() if audio is not None else None
        if audio is not None:  # bound buffered intro audio if the intro's audio outlasts its video
            audio.limit = self._samples(round((min(src.duration, 600.0) + 1.0) * float(self.rate)))
        t0 = src.start_time
        for item in _guarded(src.frames, lambda exc: fail("read", exc)):
            if isinstance(item, av.VideoFrame):
                try:
                    ready = fitter.push(item)
                except Exception as exc:
                    fail("filter", exc)
                    break
                for frame in ready:
                    self._emit(frame)
            elif resampler is not None:
                try:
                    self._place_audio(resampler, item, 0, t0)
                except (av.FFmpegError, ValueError) as exc:
                    fail("audio", exc)
                    resampler = None
        if not failure:
            try:
                ready = fitter.flush()
            except Exception as exc:
                fail("filter", exc)
                ready = []
            for frame in ready:
                self._emit(frame)
            if resampler is not None:
                with contextlib.suppress(av.FFmpegError, ValueError):
                    self._place_audio(resampler, None, 0, t0)
        if src.errors:
            failure.append(f"{src.errors} unreadable packet(s) skipped ({src.first_error})")
        if failure:
            _warn(self.warnings, f"intro partly unreadable ({'; '.join(failure)}); kept {self.next_pts} frames")
        elif self.next_pts == 0:
            _warn(self.warnings, "intro unusable: it produced no frames; delivered without intro")
        return self.next_pts

    # ------------------------------------------------------------------------------- recording

    def _encode_recording(self) -> None:
        """Every recording frame, blended, at a constant rate: gaps filled and bursts thinned by timestamp."""
        rec = self.recording
        fps = float(self.rate)
        base = self.next_pts
        t0 = rec.start_time
        offset = 0.0  # accumulated correction after clock jumps
        max_jump = MAX_TIMESTAMP_JUMP_S * fps
        audio = self.audio
        resampler = audio.resampler() if audio is not None and rec.audio is not None else None
        audio_base = audio.cursor if audio is not None else 0
        lag = round(AUDIO_GAP_LAG_S * audio.rate) if audio is not None and rec.audio is not None else 0
        stopped: list[str] = []
        jumps: list[float] = []

        def stop(exc: Exception) -> None:
            stopped.append(f"{type(exc).__name__}: {exc}")

        for item in _guarded(rec.frames, stop):
            if isinstance(item, av.VideoFrame):
                copies = 1
                if item.time is not None:
                    delta = base + (item.time - t0) * fps + offset - self.next_pts
                    if abs(delta) > max_jump:
                        offset -= delta
                        jumps.append(delta / fps)
                    elif delta < -1.1:
                        self.dropped += 1
                        continue
                    elif delta > 1.1:
                        copies += round(delta)
                        self.duplicated += copies - 1
                frame = self._prepare(item)
                for _ in range(copies):
                    self._emit(frame)
                if audio is not None:
                    audio.pad_to(self._samples(self.next_pts) - lag)
            elif resampler is not None:
                try:
                    self._place_audio(resampler, item, audio_base, t0)
                except (av.FFmpegError, ValueError) as exc:
                    _warn(self.warnings, f"recording audio unreadable from here ({exc}); silence instead")
                    resampler = None
        if resampler is not None:
            with contextlib.suppress(av.FFmpegError, ValueError):
                self._place_audio(resampler, None, audio_base, t0)
        if jumps:
            _warn(self.warnings, f"recording timestamps jump {len(jumps)}x (first {jumps[0]:+.1f} s); not filled")
        if stopped:
            _warn(self.warnings, f"recording read stopped early ({stopped[0]}); output ends there")

    def _prepare(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Make a decoded frame encodable and draw the logos on it, touching only the logo regions."""
        if frame.format.name != self.pix_fmt or frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height, format=self.pix_fmt)  # a new frame
        elif self.logos:
            frame = self.pool.copy(frame)  # decoded frames share buffers with reference pictures
        if self.logos:
            blend_logos(frame, self.logos)
        return frame
