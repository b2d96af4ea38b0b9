"""Segments on disk: joined on the booking's timeline, damaged ones tolerated, leftovers recovered after a restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from services.recorder.camera import CapturedFrame
from services.recorder.writer import EncodeSpec, SegmentWriter
from shared.payloads import ScheduledBooking
from shared.recordings.layout import BookingDir, UnsafeId, booking_dirs
from shared.recordings.segments import (
    NothingRecorded,
    count_closed,
    describe_recording,
    describe_segments,
    join_segments,
)
from shared.recordings.timeline import capture_times
from tests.recorder.conftest import decoded_frames
from tests.recorder.conftest import finished as is_finished

FPS = 15
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def at(n: int) -> datetime:
    """Capture time of the booking's n-th frame (exact: no accumulated microsecond rounding)."""
    return T0 + timedelta(seconds=n / FPS)


def _segment(path: Path, first: int, count: int) -> Path:
    """Frames `first`..`first+count-1` of the booking, as the synthetic camera would capture them."""
    writer = SegmentWriter(path, T0, encode=EncodeSpec(160, 120, FPS))
    with av.open(f"testsrc2=size=160x120:rate={FPS}", format="lavfi") as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i == count:
                break
            writer.write(CapturedFrame(frame, at(first + i)))
    writer.close()
    return path


def test_segments_join_on_the_booking_timeline_despite_a_cut_fragment_and_an_empty_file(tmp_path):
    _segment(tmp_path / "seg-00000.mp4", 0, FPS)
    seg1 = _segment(tmp_path / "seg-00001.mp4", FPS, 2 * FPS)  # two GOPs: the second is cut below
    data = seg1.read_bytes()
    seg1.write_bytes(data[: len(data) - 500])  # killed while writing its last fragment
    (tmp_path / "seg-00002.mp4").write_bytes(b"")  # killed before the header was written
    seg3 = _segment(tmp_path / "seg-00003.mp4", 5 * FPS, FPS)  # after a restart: a gap on the timeline
    segments = sorted(tmp_path.glob("seg-*.mp4"))
    assert capture_times(seg3)[0] == at(5 * FPS), "each segment knows when it was captured"

    result = join_segments(segments, tmp_path / "joined.mp4", T0)
    times = capture_times(result.path)
    assert times[0] == T0 and result.first_frame_at == T0
    assert times[-1] == result.last_frame_at == at(6 * FPS - 1)
    assert times[: 2 * FPS] == [at(i) for i in range(2 * FPS)], "whole fragments of the cut segment kept"
    assert 2 * FPS <= len([t for t in times if t < T0 + timedelta(seconds=3)]) < 3 * FPS
    assert [t for t in times if t >= T0 + timedelta(seconds=5)] == [at(5 * FPS + i) for i in range(FPS)]
    assert result.frames == len(times) == decoded_frames(result.path)
    assert result.segments == 3
    again = describe_recording(result.path)
    assert (again.frames, again.first_frame_at, again.last_frame_at) == (result.frames, T0, result.last_frame_at)


def test_a_running_tally_counts_each_segment_once_and_agrees_with_a_full_count(tmp_path, monkeypatch):
    """Counted as each segment closes, the end-of-booking count reads only what the tally has not seen, and says
    what a walk over every segment says, overlaps and a torn fragment included."""
    from shared.recordings import segments as segments_module

    _segment(tmp_path / "seg-00000.mp4", 0, 2 * FPS)
    _segment(tmp_path / "seg-00001.mp4", 2 * FPS - 5, FPS)  # overlaps the first by 5 frames (a resumed capture)
    seg2 = _segment(tmp_path / "seg-00002.mp4", 3 * FPS, 2 * FPS)
    seg2.write_bytes(seg2.read_bytes()[:-500])  # torn last fragment
    _segment(tmp_path / "seg-00003.mp4", 6 * FPS, FPS)
    segments = sorted(tmp_path.glob("seg-*.mp4"))
    tally = tmp_path / ".tally.json"
    full = describe_segments(segments, T0)

    opened: list[str] = []
    real_open = segments_module.av.open

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(segments_module.av, "open", counting_open)
    for i in range(len(segments) - 1):  # each as it closes
        count_closed(segments[: i + 1], T0, tally)
        count_closed(segments[: i + 1], T0, tally)  # again (a restart): nothing read twice
    assert opened == [p.name for p in segments[:-1]]
    opened.clear()
    counted = describe_segments(segments, T0, tally)
    assert opened == ["seg-00003.mp4"], "the end-of-booking count read more than the last segment"
    assert (counted.frames, counted.first_frame_at, counted.last_frame_at, counted.segments, counted.size_bytes) == \
        (full.frames, full.first_frame_at, full.last_frame_at, full.segments, full.size_bytes)
    assert full.frames == join_segments(segments, tmp_path / "joined.mp4", T0).frames

    # A tally that no longer describes the files (a segment rewritten, or the tally itself torn): all are read.
    (tmp_path / "seg-00001.mp4").write_bytes((tmp_path / "seg-00001.mp4").read_bytes()[:-300])
    opened.clear()
    assert describe_segments(segments, T0, tally).frames < full.frames
    assert len(opened) == len(segments)
    for torn in ("{not json", '{"counted": [], "last_s": "1/0"}', '{"counted": [], "first_s": "one"}'):
        tally.write_text(torn)
        opened.clear()
        describe_segments(segments, T0, tally)
        assert len(opened) == len(segments), torn


def test_nothing_readable_is_refused_and_leaves_no_file(tmp_path):
    (tmp_path / "seg-00000.mp4").write_bytes(b"")
    with pytest.raises(NothingRecorded):
        join_segments([tmp_path / "seg-00000.mp4"], tmp_path / "joined.mp4", T0)
    assert [p.name for p in tmp_path.iterdir()] == ["seg-00000.mp4"], "no half-written joined file, no temp"


def test_ids_with_path_characters_never_become_paths(tmp_path):
    for bad in ("../escape", "a/b", "..", "", "x" * 65, "dot.ted"):
        with pytest.raises(UnsafeId):
            BookingDir(tmp_path, bad)
    (tmp_path / "not an id").mkdir()
    (tmp_path / "good-1").mkdir()
    assert [d.booking_id for d in booking_dirs(tmp_path)] == ["good-1"]


def test_a_restarted_recorder_finishes_leftovers_even_for_a_booking_no_one_knows_any_more(start_recorder, listen,
                                                                                         make_settings):
    settings = make_settings()
    booking_dir = BookingDir(settings.raw_dir, "orphan")
    gone = ScheduledBooking(id="orphan", user_id="u7", start_time=T0, end_time=T0 + timedelta(seconds=3),
                            status="confirmed")
    booking_dir.ensure_meta(gone, origin=T0)
    _segment(booking_dir.path / "seg-00000.mp4", 0, FPS)
    stale = settings.raw_dir / ".other.mp4.x1y2z3.mp4"
    stale.write_bytes(b"half a join")

    def no_camera():
        raise AssertionError("nothing is due: the camera must not be opened")

    finished = listen(f"ezrec/{settings.camera_id}/recording/finished")
    env = start_recorder(camera_factory=no_camera)
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "orphan", timeout=15)
    manifest = json.loads(payload)
    assert manifest["user_id"] == "u7" and manifest["frames"] == FPS and manifest["first_frame_at"].startswith(
        "2026-11-25T18:00:00")
    assert is_finished(env.raw / "orphan.mp4") and not stale.exists()
