"""The intro, prepared once per output format: fitted to the recording and encoded exactly like it.

Fitting: turn upright (the intro's own display matrix), scale keeping aspect into the recording's
display size, pad black, turn to the recording's stored orientation (so the display matrix every piece
carries shows it upright, see shared/video_format.py), convert rate and format (limited range).
The rate conversion is libavfilter's `fps` filter (drops/duplicates by timestamp, constant rate out)
rather than re-stamping frames, so an intro at 25 fps keeps its real duration in a 30 fps output.

Preparing: the fitted frames go through the very encoder set-up the recording gets (shared/video_format.py), so the
result joins any video of that format by packet copy; its audio is cut at the intro's video length
and followed by encoded silence (see audio_copy.py). intro_cache.py keeps the results.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter

from services.video_worker.media.audio_track import AAC_FRAME, AudioTrack
from services.video_worker.media.decode import MediaSource, SourceError
from services.video_worker.media.video_out import VideoOutput, guarded, place_audio, samples_at
from shared.atomic import atomic_path
from shared.video_format import OutputFormat, display_rotation

log = logging.getLogger(__name__)


_CLOCKWISE = {90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "cclock")]}


def turn_filters(clockwise: int) -> list[tuple[str, str]]:
    """libavfilter steps that turn a picture clockwise by a quarter-turn multiple (none for 0)."""
    return list(_CLOCKWISE.get(clockwise % 360, []))


class IntroFitter:
    """buffer -> [turn upright] -> scale -> pad -> setsar -> [turn to stored] -> fps -> format -> buffersink.

    `width` x `height` is the stored size and `rotation` the display matrix (clockwise) of the output.
    """

    def __init__(
        self,
        first: av.VideoFrame,
        width: int,
        height: int,
        rate: Fraction,
        pix_fmt: str = "yuv420p",
        full_range: bool = False,
        rotation: int = 0,
    ) -> None:
        self._width = first.width
        self._height = first.height
        self._format = first.format.name
        self._time_base = first.time_base or Fraction(1, 90_000)
        self._next_pts = 0
        shown_w, shown_h = (height, width) if rotation % 180 == 90 else (width, height)
        graph = av.filter.Graph()
        src = graph.add_buffer(width=first.width, height=first.height, format=first.format, time_base=self._time_base)
        scale_args = f"{shown_w}:{shown_h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
        if not full_range:
            scale_args += ":out_range=tv"  # a full-range intro is converted (docs/video.md)
        elif pix_fmt == "yuv420p":
            scale_args += ":out_range=full"
        chain = [
            src,
            *(graph.add(name, args) for name, args in turn_filters(display_rotation(first))),
            graph.add("scale", scale_args),
            graph.add("pad", f"{shown_w}:{shown_h}:(ow-iw)/2:(oh-ih)/2:color=black"),
            graph.add("setsar", "1"),
            *(graph.add(name, args) for name, args in turn_filters(-rotation)),
            graph.add("fps", f"fps={rate.numerator}/{rate.denominator}"),
            graph.add("format", pix_fmt),
            graph.add("buffersink"),
        ]
        graph.link_nodes(*chain).configure()
        self._graph = graph

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Feed one intro frame; returns the output-rate frames that became ready."""
        if frame.width != self._width or frame.height != self._height or frame.format.name != self._format:
            # buffersrc cannot change geometry mid-stream; normalise the rare odd frame instead
            converted = frame.reformat(width=self._width, height=self._height, format=self._format)
            converted.pts, converted.time_base = frame.pts, frame.time_base
            frame = converted
        if frame.pts is None:
            frame.pts = self._next_pts
        frame.time_base = self._time_base
        self._next_pts = frame.pts + max(1, frame.duration or 1)
        self._graph.vpush(frame)
        return self._drain()

    def flush(self) -> list[av.VideoFrame]:
        """Signal end of intro; the fps filter then emits frames up to the intro's end time."""
        self._graph.vpush(None)
        return self._drain()

    def _drain(self) -> list[av.VideoFrame]:
        out: list[av.VideoFrame] = []
        while True:
            try:
                out.append(self._graph.vpull())
            except (av.BlockingIOError, av.EOFError):
                return out


# ----------------------------------------------------------------------------------- preparation

SILENT_TAIL_FRAMES = 4
"""AAC frames of encoded silence after the intro's audio: the last ones are steady-state silence, which
audio_copy.AudioCopier repeats to extend the track without an encoder."""
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
MAX_BUFFERED_INTRO_S = 600.0


class IntroUnusable(Exception):
    """The intro yields nothing usable; the message is the warning to publish (the video goes without it)."""


@dataclass(frozen=True)
class PreparedIntro:
    """An intro encoded once at an OutputFormat: its packets join any video of that format by copy."""

    path: Path
    frames: int
    audio_rate: int | None  # None: the intro has no audio
    audio_layout: str | None
    intro_samples: int  # audio samples that belong to the intro (its video length); silence follows
    extradata: bytes  # the encoder's parameter sets (Annex B): a live encoder must produce the same
    warnings: tuple[str, ...] = ()
    source_sha: str = ""
    fmt_key: str = ""

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None

    def to_json(self) -> str:
        data = asdict(self)
        data["path"] = self.path.name
        data["extradata"] = self.extradata.hex()
        data["warnings"] = list(self.warnings)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, directory: Path) -> PreparedIntro:
        data = json.loads(text)
        data["path"] = directory / data["path"]
        data["extradata"] = bytes.fromhex(data["extradata"])
        data["warnings"] = tuple(data["warnings"])
        return cls(**data)


def prepare_intro(intro: Path, fmt: OutputFormat, dest: Path, *, source_sha: str = "",
                  progress: Callable[[int], None] | None = None, frame_threads: bool = False) -> PreparedIntro:
    """Encode `intro` fitted to `fmt` into `dest` (atomically). Raises IntroUnusable.

    Its audio (if any) is cut exactly at the intro's video length and followed by a few frames of
    encoded silence. A part of the intro that cannot be read is a warning, kept in the result.
    """
    warnings: list[str] = []
    try:
        src = MediaSource(intro, frame_threads=frame_threads)
    except SourceError as exc:
        raise IntroUnusable(f"intro unreadable: {exc}; delivered without intro") from exc
    except Exception as exc:  # an intro must never fail the job
        raise IntroUnusable(f"intro unreadable: {type(exc).__name__}: {exc}; delivered without intro") from exc
    try:
        try:
            fitter = IntroFitter(src.first, fmt.width, fmt.height, fmt.rate, fmt.pix_fmt, fmt.full_range,
                                 fmt.rotation)
        except Exception as exc:
            raise IntroUnusable(f"intro unusable: {type(exc).__name__}: {exc}; delivered without intro") from exc
        with atomic_path(dest, suffix=".mp4.tmp") as tmp:
            container = av.open(str(tmp), "w", format="mp4")
            try:
                result = _encode(src, fitter, container, fmt, warnings, source_sha, dest, progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    container.close()
                raise
            container.close()
            if result.frames == 0:
                raise IntroUnusable("intro unusable: it produced no frames; delivered without intro")
        return result
    finally:
        src.close()


def _encode(src: MediaSource, fitter: IntroFitter, container: av.container.OutputContainer, fmt: OutputFormat,
            warnings: list[str], source_sha: str, dest: Path, progress: Callable[[int], None] | None) -> PreparedIntro:
    out = VideoOutput(container, fmt)
    audio: AudioTrack | None = None
    if src.audio is not None:
        rate = src.audio.codec_context.sample_rate or 48_000
        rate = rate if rate in AAC_RATES else 48_000
        layout = "stereo" if (src.audio.codec_context.channels or 1) > 1 else "mono"
        audio = AudioTrack(container, rate, layout, fmt.encode.audio_bitrate)
        # bounds buffered intro audio when the intro's audio outlasts its video
        audio.limit = samples_at(round((min(src.duration, MAX_BUFFERED_INTRO_S) + 1.0) * float(fmt.rate)),
                                 fmt.rate, rate)
        track = audio
        out.on_frame = lambda n: track.encode_until(samples_at(n, fmt.rate, track.rate))
    if progress is not None:
        previous = out.on_frame
        report = progress

        def on_frame(n: int) -> None:
            if previous is not None:
                previous(n)
            report(n)

        out.on_frame = on_frame
    resampler = audio.resampler() if audio is not None else None
    failure: list[str] = []

    def fail(where: str, exc: Exception) -> None:
        failure.append(f"{where}: {type(exc).__name__}: {exc}")

    t0 = src.start_time
    for item in guarded(src.frames, lambda exc: fail("read", exc)):
        if isinstance(item, av.VideoFrame):
            try:
                ready = fitter.push(item)
            except Exception as exc:
                fail("filter", exc)
                break
            for frame in ready:
                out.emit(frame)
        elif resampler is not None and audio is not None:
            try:
                place_audio(audio, resampler, item, 0, t0)
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
            out.emit(frame)
        if resampler is not None and audio is not None:
            with contextlib.suppress(av.FFmpegError, ValueError):
                place_audio(audio, resampler, None, 0, t0)
    if src.errors:
        failure.append(f"{src.errors} unreadable packet(s) skipped ({src.first_error})")
    frames = out.next_pts
    if failure:
        message = f"intro partly unreadable ({'; '.join(failure)}); kept {frames} frames"
        log.warning("%s", message)
        warnings.append(message)
    out.flush()
    intro_samples = 0
    if audio is not None:
        intro_samples = samples_at(frames, fmt.rate, audio.rate)
        audio.limit = None
        audio.cut(intro_samples)
        aligned = -(-intro_samples // AAC_FRAME) * AAC_FRAME
        audio.finish(aligned + SILENT_TAIL_FRAMES * AAC_FRAME)
    return PreparedIntro(
        path=dest, frames=frames, audio_rate=audio.rate if audio else None,
        audio_layout=audio.layout if audio else None, intro_samples=intro_samples, extradata=out.extradata,
        warnings=tuple(warnings), source_sha=source_sha, fmt_key=fmt.key,
    )
