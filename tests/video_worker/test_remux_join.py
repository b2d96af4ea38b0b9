"""Segments processed one by one and joined by remux, against the whole-file encode: same frames, timing, audio.

Segments are real recorder output (services/recorder's SegmentWriter: fragmented MP4 on the booking's
timeline); every frame carries its number, so the tests read back exactly which frames a video shows.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from services.video_worker.media.decode import MediaSource, SourceError
from services.video_worker.media.intro import PreparedIntro
from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.process import (
    EncodeSettings,
    LogoSpec,
    RecordingUnreadable,
    encode_part,
    prepared_logos,
    process_video,
    recording_format,
)
from services.video_worker.media.remux_join import JoinMismatch, join_parts
from services.video_worker.media.tail_reader import TailReader
from shared.recordings.segments import join_segments
from shared.video_format import OutputFormat
from tests.media import INTRO_TONE_HZ, audio_mono, make_intro, make_logo_png, probe
from tests.video_worker.segments import frame_numbers, numbered_frame, record_segments

FAST = EncodeSettings(preset="ultrafast")
FPS = 15
START = datetime(2026, 3, 1, 18, 0, 0, tzinfo=UTC)


def _parts(segments, out_dir: Path, encode: EncodeSettings = FAST, logos=()) -> tuple[OutputFormat, list[Path]]:
    fmt = None
    outputs = []
    for seg in segments:
        src = MediaSource(seg.path)
        try:
            warnings: list[str] = []
            fmt = fmt or recording_format(src, encode, warnings)
            result = encode_part(src, out_dir / f"part-{seg.index:05d}.mp4", fmt,
                                 prepared_logos(logos, fmt, warnings), warnings)
            assert result.frames_in == result.frames_out == seg.frames
            outputs.append(result.output)
        finally:
            src.close()
    assert fmt is not None
    return fmt, outputs


@pytest.fixture(scope="module")
def booking(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("booking")
    _, segments = record_segments(d / "raw", "b1", "u1", START, [15, 15, 15, 7], fps=FPS)
    intro = make_intro(d / "intro.mp4", 1.0, size=(320, 180), fps=25, audio=True)
    return d, segments, intro


def test_joined_segments_show_every_frame_once_after_the_intro(tmp_path: Path, booking) -> None:
    _, segments, intro = booking
    fmt, parts = _parts(segments, tmp_path)
    prepared, cached = IntroCache(tmp_path / "cache").get(intro, fmt)
    assert not cached and prepared.frames == FPS
    result = join_parts(tmp_path / "final.mp4", prepared, parts, fmt)
    info = probe(result.output)
    total = sum(s.frames for s in segments)
    assert result.frames == info["frames"] == FPS + total
    assert frame_numbers(result.output, skip=FPS) == list(range(total))
    assert abs(info["video_duration"] - (1.0 + total / FPS)) < 1e-6, "duration = intro + recording"
    with av.open(str(result.output)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        dts = [p.dts for p in packets]
        pts = sorted(p.pts for p in packets)
        keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
        tb = stream.time_base
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), "DTS strictly increasing across joins"
    assert {round((b - a) * tb * FPS, 6) for a, b in zip(pts, pts[1:], strict=False)} == {1.0}, "constant rate"
    assert {0, FPS, FPS + 15, FPS + 30, FPS + 45} <= set(keyframes), "every piece starts on a keyframe"


def test_join_audio_is_the_intro_then_silence_in_sync(tmp_path: Path, booking) -> None:
    _, segments, intro = booking
    fmt, parts = _parts(segments, tmp_path)
    prepared, _ = IntroCache(tmp_path / "cache").get(intro, fmt)
    result = join_parts(tmp_path / "final.mp4", prepared, parts, fmt)
    info = probe(result.output)
    assert info["has_audio"] and info["audio_codec"] == "aac"
    with av.open(str(result.output)) as c:
        a = c.streams.audio[0]
        audio_s = float(a.duration * a.time_base)
    assert abs(audio_s - result.duration_s) <= 1 / FPS, (audio_s, result.duration_s)
    samples, rate = audio_mono(result.output)
    assert abs(len(samples) / rate - result.duration_s) < 0.05  # decoders add at most the last frame's padding
    tone_end = _tone_ends_at(result.output)
    assert abs(tone_end - 1.0) <= 0.02, f"intro tone ends at {tone_end:.3f}s, the intro's video at 1.000s"
    spectrum = np.abs(np.fft.rfft(samples[int(0.2 * rate):int(0.8 * rate)]))
    assert abs(np.argmax(spectrum) * rate / (0.6 * rate) - INTRO_TONE_HZ) < 5


def test_join_equals_the_whole_file_encode(tmp_path: Path, booking) -> None:
    d, segments, intro = booking
    logo = make_logo_png(tmp_path / "logo.png")
    fmt, parts = _parts(segments, tmp_path, logos=[LogoSpec(logo)])
    cache = IntroCache(tmp_path / "cache")
    prepared, _ = cache.get(intro, fmt)
    joined = join_parts(tmp_path / "joined.mp4", prepared, parts, fmt)
    # the recorder's own join of its segments: what the worker gets when it processes the whole recording
    whole_raw = join_segments([seg.path for seg in segments], tmp_path / "raw.mp4", START).path
    whole = process_video(whole_raw, tmp_path / "whole.mp4", intro=intro, logos=[LogoSpec(logo)], encode=FAST,
                          intro_cache=cache)
    assert whole.intro_cached
    a, b = probe(joined.output), probe(whole.output)
    assert a["frames"] == b["frames"] and abs(a["duration"] - b["duration"]) < 1 / FPS
    assert frame_numbers(joined.output, skip=FPS) == frame_numbers(whole.output, skip=FPS)


def test_pieces_of_different_formats_are_refused(tmp_path: Path, booking) -> None:
    _, segments, intro = booking
    fmt, parts = _parts(segments[:2], tmp_path)
    _, other = _parts(segments[2:3], tmp_path / "other", encode=EncodeSettings(preset="medium"))
    with pytest.raises(JoinMismatch):
        join_parts(tmp_path / "final.mp4", None, [*parts, *other], fmt)
    assert not (tmp_path / "final.mp4").exists()


def _tone_ends_at(path: Path) -> float:
    samples, rate = audio_mono(path)
    block = rate // 100  # 10 ms
    loud = [float(np.sqrt(np.mean(samples[i:i + block] ** 2))) > 0.1 for i in range(0, len(samples) - block, block)]
    end = loud.index(False)
    assert not any(loud[end:]), "silence after the intro"
    return end / 100


def test_intro_whose_audio_cannot_be_extended_by_copy_is_reencoded(tmp_path: Path, booking) -> None:
    """A prepared intro must end in repeated silent AAC frames; otherwise the join encodes the audio instead."""
    _, segments, intro = booking
    fmt, parts = _parts(segments, tmp_path)
    prepared, _ = IntroCache(tmp_path / "cache").get(intro, fmt)
    odd = tmp_path / "odd-intro.mp4"  # the prepared video with the original intro's audio (a tone to the end)
    with av.open(str(prepared.path)) as v, av.open(str(intro)) as a, av.open(str(odd), "w", format="mp4") as out:
        vs = out.add_stream_from_template(v.streams.video[0])
        aus = out.add_stream_from_template(a.streams.audio[0])
        for src, ins, stream in ((v, v.streams.video[0], vs), (a, a.streams.audio[0], aus)):
            for packet in src.demux(ins):
                if packet.size:
                    packet.stream = stream
                    out.mux(packet)
    unusual = PreparedIntro(path=odd, frames=prepared.frames, audio_rate=48_000, audio_layout="stereo",
                            intro_samples=prepared.intro_samples, extradata=prepared.extradata)
    result = join_parts(tmp_path / "final.mp4", unusual, parts, fmt)
    assert result.has_audio and frame_numbers(result.output, skip=FPS) == list(range(sum(s.frames for s in segments)))
    assert abs(_tone_ends_at(result.output) - 1.0) <= 0.03


# ------------------------------------------------------------------------------------- the cache


def test_intro_is_prepared_once_per_content_and_format(tmp_path: Path, booking) -> None:
    _, segments, intro = booking
    src = MediaSource(segments[0].path)
    fmt = recording_format(src, FAST, [])
    src.close()
    cache = IntroCache(tmp_path / "cache")
    first, cached = cache.get(intro, fmt)
    mtime = first.path.stat().st_mtime_ns
    again, cached_again = cache.get(intro, fmt)
    assert not cached and cached_again and again.path == first.path and first.path.stat().st_mtime_ns == mtime
    for other in (recording_format(MediaSource(segments[0].path), EncodeSettings(preset="ultrafast", crf=30), []),
                  recording_format(MediaSource(segments[0].path), EncodeSettings(preset="superfast"), [])):
        prepared, was = cache.get(intro, other)
        assert not was and prepared.path != first.path, "other encoder settings: another preparation"
    copy = tmp_path / "same-content.mp4"
    copy.write_bytes(intro.read_bytes())
    assert cache.get(copy, fmt)[1], "keyed by content, not by file name"
    assert cache.invalidate(first.source_sha) == 3
    assert not cache.get(intro, fmt)[1]


def test_whole_file_encode_with_a_cached_intro_copies_it(tmp_path: Path, booking) -> None:
    d, segments, intro = booking
    cache = IntroCache(tmp_path / "cache")
    cold = process_video(segments[0].path, tmp_path / "cold.mp4", intro=intro, encode=FAST, intro_cache=cache)
    warm = process_video(segments[0].path, tmp_path / "warm.mp4", intro=intro, encode=FAST, intro_cache=cache)
    assert not cold.intro_cached and warm.intro_cached
    assert probe(cold.output)["frames"] == probe(warm.output)["frames"] == FPS + 15
    assert frame_numbers(warm.output, skip=FPS) == list(range(15))


def test_cached_intro_from_another_encoder_is_reencoded_not_copied(tmp_path: Path, booking) -> None:
    _, segments, intro = booking
    cache = IntroCache(tmp_path / "cache")
    first = process_video(segments[0].path, tmp_path / "a.mp4", intro=intro, encode=FAST, intro_cache=cache)
    [meta] = (tmp_path / "cache").glob("*.json")
    data = json.loads(meta.read_text())
    data["extradata"] = "00000001deadbeef"
    meta.write_text(json.dumps(data))
    result = process_video(segments[0].path, tmp_path / "b.mp4", intro=intro, encode=FAST, intro_cache=cache)
    assert any(w.startswith("intro re-encoded") for w in result.warnings), result.warnings
    assert probe(result.output)["frames"] == probe(first.output)["frames"]


# -------------------------------------------------------------------------------- live segments


def test_segment_still_being_written_is_followed_to_its_end(tmp_path: Path) -> None:
    """The recorder flushes a fragment per second; the reader waits at the end of the file until the close."""
    from services.recorder.camera import CapturedFrame
    from services.recorder.writer import EncodeSpec, SegmentWriter

    path = tmp_path / "seg-00000.mp4"
    closed = threading.Event()
    origin = datetime.now(UTC)

    def record() -> None:
        writer = SegmentWriter(path, origin, encode=EncodeSpec(320, 240, FPS))
        for n in range(45):
            writer.write(CapturedFrame(numbered_frame(n, (320, 240)), origin + timedelta(seconds=n / FPS)))
            time.sleep(1 / FPS / 3)  # three times real time: keeps the test short
        writer.close()
        closed.set()

    thread = threading.Thread(target=record)
    thread.start()
    while not path.exists():
        time.sleep(0.01)
    reader = TailReader(path, closed.is_set, poll_s=0.02, check_every_s=0.05)
    source = MediaSource(path, stream=reader)
    fmt = recording_format(source, FAST, [])
    result = encode_part(source, tmp_path / "part.mp4", fmt, [], [])
    thread.join()
    assert reader.complete and result.frames_in == result.frames_out == 45
    assert frame_numbers(result.output) == list(range(45))


def test_segment_whose_writer_died_is_given_up_as_incomplete(tmp_path: Path, booking) -> None:
    _, segments, _ = booking
    path = tmp_path / "seg.mp4"
    data = segments[0].path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the writer was killed half-way and never closed it
    reader = TailReader(path, lambda: False, stall_s=0.5, poll_s=0.02)
    try:
        source = MediaSource(path, stream=reader)
    except SourceError:
        assert reader.stalled
        return
    result = encode_part(source, tmp_path / "part.mp4", recording_format(source, FAST, []), [], [])
    assert reader.stalled and not reader.complete and result.frames_out < segments[0].frames


def test_unreadable_segment_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "seg-00001.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypiso5" + bytes(range(256)) * 40)
    with pytest.raises((SourceError, RecordingUnreadable)):
        MediaSource(bad)
