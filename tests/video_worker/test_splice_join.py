"""The remux join kept as a splice: the same bytes as the plain file, the recording's bytes not written again.

Real recorder segments (fragmented MP4), a prepared intro with AAC audio; the plain join of the same pieces
is the reference, byte for byte. ffmpeg decodes the splice's bytes with no error.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.remux_join import JoinAborted, _frames, join_parts
from services.video_worker.media.splice_sink import SpliceUnfit
from shared import spliced_file
from tests.media import make_intro, probe
from tests.video_worker.segments import capture_format, frame_numbers, record_segments, record_stamped_segments
from tests.video_worker.test_remux_join import FPS, START, _parts


@pytest.fixture(scope="module")
def pieces(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("splice")
    _, segments = record_segments(d / "raw", "b1", "u1", START, [15, 15, 15, 7], fps=FPS)
    intro = make_intro(d / "intro.mp4", 1.0, size=(320, 180), fps=25, audio=True)
    fmt, parts = _parts(segments, d / "parts")
    prepared, _ = IntroCache(d / "cache").get(intro, fmt)
    return d, fmt, parts, prepared, sum(s.frames for s in segments)


def _bytes(path: Path) -> bytes:
    with spliced_file.open_read(path) as fh:
        return fh.read()


def test_a_spliced_join_is_the_plain_join_byte_for_byte_and_writes_only_its_index(tmp_path: Path, pieces) -> None:
    _, fmt, parts, prepared, total = pieces
    plain = join_parts(tmp_path / "plain.mp4", prepared, parts, fmt)
    spliced = join_parts(tmp_path / "out" / "video.mp4", prepared, parts, fmt, splice=True)
    target = tmp_path / "out" / "video.mp4"
    assert spliced.output == target and spliced_file.is_splice(target)
    assert _bytes(target) == plain.output.read_bytes()
    assert (spliced.frames, spliced.intro_frames, spliced.has_audio) == (plain.frames, plain.intro_frames, True)
    written = sum(p.stat().st_size for p in target.iterdir() if p.stat().st_nlink == 1)
    linked = {p.stat().st_ino for p in target.iterdir() if p.stat().st_nlink > 1}
    assert linked == {p.stat().st_ino for p in [prepared.path, *parts]}, "the intro and every piece, linked"
    moov = plain.output.stat().st_size - sum(p.stat().st_size for p in [prepared.path, *parts])
    assert written < moov + 64 * 1024, f"{written} bytes written for the splice: its index and audio, no video"
    assert [p.name for p in target.parent.iterdir()] == ["video.mp4"], "no temp left"

    info = probe(target)
    assert info["frames"] == FPS + total and info["has_audio"]
    assert frame_numbers(target, skip=FPS) == list(range(total))
    run = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "null", "-"], input=_bytes(target),
                         capture_output=True, timeout=60)  # piped: the moov is in front, nothing seeks
    assert run.returncode == 0 and run.stderr == b"", run.stderr


def test_a_spliced_video_keeps_its_bytes_when_the_recording_and_the_intro_go(tmp_path: Path, pieces) -> None:
    d, fmt, parts, prepared, total = pieces
    copies = tmp_path / "copies"
    shutil.copytree(parts[0].parent, copies)
    intro = tmp_path / "intro.mp4"
    shutil.copy(prepared.path, intro)
    mine = [copies / p.name for p in parts]
    own_intro = dataclasses.replace(prepared, path=intro)
    target = tmp_path / "video.mp4"
    join_parts(target, own_intro, mine, fmt, splice=True)
    before = _bytes(target)
    shutil.rmtree(copies)  # the worker's cleanup after the upload
    intro.unlink()  # the intro cache's eviction
    assert _bytes(target) == before
    assert frame_numbers(target, skip=FPS) == list(range(total))


def test_a_piece_on_another_filesystem_gives_the_plain_file_and_a_streamed_join_stops(tmp_path: Path, pieces,
                                                                                       monkeypatch) -> None:
    """A splice needs hard links: when it cannot have them, the video is still made (as a plain file)."""
    _, fmt, parts, prepared, total = pieces
    from shared import spliced_file as module

    def no_link(*_a, **_k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(module.os, "link", no_link)
    result = join_parts(tmp_path / "video.mp4", prepared, parts, fmt, splice=True)
    assert (tmp_path / "video.mp4").is_file() and result.frames == FPS + total
    assert frame_numbers(result.output, skip=FPS) == list(range(total))
    with pytest.raises(JoinAborted, match="not kept as a splice"):
        join_parts(tmp_path / "streamed.mp4", prepared, iter(parts), fmt, expected_frames=total, splice=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


def test_bytes_not_where_the_demuxer_said_are_refused(tmp_path: Path, pieces, monkeypatch) -> None:
    """The ledger checks every video packet against its file: a splice never points at the wrong bytes."""
    _, fmt, parts, prepared, _ = pieces
    from services.video_worker.media import splice_sink

    real = splice_sink.os.pread
    monkeypatch.setattr(splice_sink.os, "pread", lambda fd, n, at: real(fd, n, at + 1))
    with pytest.raises(JoinAborted, match="not at its pos"):
        join_parts(tmp_path / "streamed.mp4", prepared, iter(parts), fmt, expected_frames=70, splice=True)
    with pytest.raises(SpliceUnfit):
        from services.video_worker.media.remux_join import _join_splice, moov_reserve
        _join_splice(tmp_path / "v.mp4", prepared, parts, fmt, moov_reserve(100, fmt, prepared), None)
    assert list(tmp_path.iterdir()) == []


def test_a_streamed_splice_join_muxes_each_piece_as_it_arrives(tmp_path: Path, pieces, monkeypatch) -> None:
    """Pieces of a streamed join come while the booking still records: each is muxed before the next is asked
    for, so at the booking's end only the last segment remains (not the whole recording)."""
    _, fmt, parts, prepared, total = pieces
    from services.video_worker.media import remux_join

    events: list[str] = []
    real_add = remux_join._Joiner.add

    def add(self, path: Path) -> None:
        real_add(self, path)
        events.append(f"muxed {path.name}")

    def arriving():
        for part in parts:
            events.append(f"arrived {part.name}")
            yield part

    monkeypatch.setattr(remux_join._Joiner, "add", add)
    join_parts(tmp_path / "video.mp4", prepared, arriving(), fmt, expected_frames=total, sync=True, splice=True)
    assert events == [f"muxed {prepared.path.name}"] + [e for p in parts for e in (f"arrived {p.name}",
                                                                                     f"muxed {p.name}")]


def test_the_recorders_own_segments_joined_after_the_booking_get_their_index_in_one_pass(tmp_path: Path,
                                                                                      caplog) -> None:
    """Segments as the recorder writes them (fragmented MP4: no frame count in their header), joined as a list
    (a worker that comes back after the booking) behind an intro with audio: the index is sized from their
    frames and fits the space reserved for it, so the video is kept as a splice, not written twice by a
    faststart pass. (Sized from the headers' zero, the index of 160 s with audio overflows it.)"""
    fmt = capture_format()
    _, segments = record_stamped_segments(tmp_path / "raw", "b1", "u1", START, [300] * 8, fmt=fmt)
    prepared, _ = IntroCache(tmp_path / "cache").get(make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240),
                                                                fps=25, audio=True), fmt)
    paths = [s.path for s in segments]
    assert _frames(paths[0]) == 300
    with caplog.at_level(logging.WARNING):
        result = join_parts(tmp_path / "video.mp4", prepared, paths, fmt, splice=True)
    assert "did not fit" not in caplog.text and "plain file" not in caplog.text, caplog.text
    assert spliced_file.is_splice(result.output) and result.frames == FPS + 2400 and result.has_audio
    assert frame_numbers(result.output, skip=FPS) == list(range(2400))


def test_a_piece_replaced_by_another_file_during_the_join_gives_the_plain_file(tmp_path: Path, pieces,
                                                                                 monkeypatch) -> None:
    """The splice links a piece by its name after reading it: if that name now holds another file (the intro
    cache preparing an intro again, say), linking it would point the video's index at the wrong bytes."""
    _, fmt, parts, prepared, total = pieces
    mine = tmp_path / "parts"
    mine.mkdir()
    copies = [mine / p.name for p in parts]
    for p, c in zip(parts, copies, strict=True):
        shutil.copy(p, c)
    from services.video_worker.media import splice_sink

    real_build = splice_sink.build_splice

    def build_after_a_swap(*args, **kwargs):
        swapped = copies[1].with_suffix(".new")
        shutil.copy(copies[1], swapped)
        swapped.replace(copies[1])  # the same bytes, another file
        return real_build(*args, **kwargs)

    monkeypatch.setattr("services.video_worker.media.remux_join.build_splice", build_after_a_swap)
    result = join_parts(tmp_path / "video.mp4", prepared, copies, fmt, splice=True)
    assert (tmp_path / "video.mp4").is_file(), "written as a plain file"
    assert frame_numbers(result.output, skip=FPS) == list(range(total))
