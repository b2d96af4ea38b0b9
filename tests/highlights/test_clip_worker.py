"""The worker's highlight job on recorder-layout segments written by the recorder's own SegmentWriter: frames carry
their number as a barcode, so each test reads back exactly which recording frames a clip shows."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime, timedelta

import av
import pytest

from services.recorder.camera import CapturedFrame
from services.recorder.writer import FRAGMENTED, EncodeSpec, SegmentWriter
from services.video_worker.context import WorkerContext
from services.video_worker.highlights.clip import booking_logos
from services.video_worker.highlights.loop import HighlightLoop
from services.video_worker.job_table import JobTable
from shared import capture_stamp
from shared.bus import MqttBus
from shared.job_states import TABLE_FILE
from shared.models import BookingIn, UserSettings
from shared.payloads import HighlightClip, ScheduledBooking
from shared.recordings.layout import BookingDir
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import make_logo_png
from tests.video_worker.segments import frame_numbers, numbered_frame

FPS = 15
SIZE = (320, 240)


@pytest.fixture
def highlight_worker(settings, listen):
    """The worker's highlight loop alone (no segment or job loops), on the real broker and store."""
    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "worker")
    ctx = WorkerContext(settings, store, bus, JobTable(settings.state_dir / TABLE_FILE))
    loop = HighlightLoop(ctx)
    stop = threading.Event()
    ctx.stop = stop
    events = listen(f"ezrec/{settings.camera_id}/highlight/#")
    bus.start()
    assert bus.wait_connected(10)
    thread = loop.thread(stop)
    thread.start()
    yield loop, store, events
    stop.set()
    loop.wake.set()
    thread.join(30)
    bus.stop()


def _book(store: LocalStore, settings, booking_id: str, start: datetime, seconds: float, user: str = "u1") -> None:
    store.create_bookings([BookingIn(id=booking_id, user_id=user, start_time=start,
                                     end_time=start + timedelta(seconds=seconds))], settings.camera_id)


def _segments(settings, booking_id: str, start: datetime, counts: list[int], *, stamp: dict[str, str] | None = None,
              pace: bool = False) -> BookingDir:
    """Back-to-back segments, frames numbered from 0 at `start` + n/FPS; `pace`: written at the camera's pace."""
    booking_dir = BookingDir(settings.raw_dir, booking_id)
    end = start + timedelta(seconds=sum(counts) / FPS)
    meta = booking_dir.ensure_meta(ScheduledBooking(id=booking_id, user_id="u1", start_time=start, end_time=end,
                                                    status="confirmed"), origin=start)
    n = 0
    for count in counts:
        _, path = booking_dir.next_segment()
        writer = SegmentWriter(path, meta.origin, encode=EncodeSpec(SIZE[0], SIZE[1], FPS))
        for _ in range(count):
            at = start + timedelta(seconds=n / FPS)
            if pace:
                time.sleep(max(0.0, (at - utc_now()).total_seconds()))
            writer.write(CapturedFrame(numbered_frame(n, SIZE), at))
            n += 1
        writer.close()
        if stamp:
            _restamp(path, stamp)
    return booking_dir


def _restamp(path, stamp: dict[str, str]) -> None:
    """The segment remuxed with these capture stamps added: what a recorder that blends logos writes."""
    tmp = path.with_name(".restamp.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w", format="mp4",
                                            options={"movflags": f"{FRAGMENTED}"}) as out:
        out.metadata.update({**src.metadata, **stamp})
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    tmp.replace(path)


def _clip(settings, booking_id: str, start: datetime, a: float, b: float, clip_id: str = "h1",
          presses: int = 1) -> HighlightClip:
    return HighlightClip(clip_id=clip_id, booking_id=booking_id, camera_id=settings.camera_id, user_id="u1",
                         start_at=start + timedelta(seconds=a), end_at=start + timedelta(seconds=b), presses=presses)


def _created(events, clip_id: str, timeout: float = 20.0) -> dict:
    _, payload = events.wait_for(lambda t, p: t.endswith("/highlight/created") and json.loads(p)["clip_id"] == clip_id,
                                 timeout)
    return json.loads(payload)


def _packet_digests(path) -> list[str]:
    with av.open(str(path)) as c:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(video=0) if p.size]


def test_a_clip_of_closed_segments_is_a_packet_copy_starting_on_the_keyframe_before_its_start(settings,
                                                                                            highlight_worker):
    loop, store, events = highlight_worker
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c1", start, 6)
    booking_dir = _segments(settings, "c1", start, [30, 30, 30])
    loop.on_clip("t", _clip(settings, "c1", start, 1.3, 4.1))
    created = _created(events, "h1")
    [video] = store.list_videos(booking_id="c1", kind="highlight")
    assert created["video_id"] == video.id and created["copied"] is True
    path = store.local_object_path("videos", video.storage_path)
    assert video.storage_path == "u1/highlights/c1/h1.mp4"
    # Keyframes every 15 frames: the one at or before 1.3 s is frame 15 (1.0 s); the last at or before 4.1 s is 61.
    assert frame_numbers(path) == list(range(15, 62))
    assert abs(video.duration_seconds - 47 / FPS) < 0.01
    # Copied: the very packets the recorder wrote, across the segment boundaries at frames 30 and 60.
    recorded = [d for seg in booking_dir.segments() for d in _packet_digests(seg)]
    assert _packet_digests(path) == recorded[15:62]
    assert created["cpu_s"] < 1.0  # the figure itself is measured by bench/highlights.py


def test_without_a_stamp_the_users_logo_is_drawn_by_one_transcode(settings, highlight_worker, tmp_path):
    loop, store, events = highlight_worker
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c2", start, 4)
    logo = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=0)
    store.put_object("media", "u1/media/logo-x.png", logo, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", logo_path="u1/media/logo-x.png"))
    _segments(settings, "c2", start, [30, 30])
    loop.on_clip("t", _clip(settings, "c2", start, 2.0, 3.0))
    created = _created(events, "h1")
    assert created["copied"] is False
    [video] = store.list_videos(booking_id="c2", kind="highlight")
    path = store.local_object_path("videos", video.storage_path)
    assert frame_numbers(path) == list(range(30, 46))
    with av.open(str(path)) as c:
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")
    h, w, _ = rgb.shape
    corner = rgb[: h // 4, w // 2:].reshape(-1, 3).astype(int)  # the logo's default corner: top right
    red = (corner[:, 0] > 180) & (corner[:, 1] < 80) & (corner[:, 2] < 80)
    assert red.sum() > 500


def test_segments_stamped_with_the_bookings_logos_are_copied(settings, highlight_worker, tmp_path):
    loop, store, events = highlight_worker
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c3", start, 4)
    logo = make_logo_png(tmp_path / "logo.png")
    store.put_object("media", "u1/media/logo-x.png", logo, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", logo_path="u1/media/logo-x.png"))
    drawn, _, _ = booking_logos(loop.ctx, "c3", "u1")
    assert len(drawn) == 1
    fingerprint = capture_stamp.logo_fingerprint(drawn)  # as the capture recorder stamps what it blended
    _segments(settings, "c3", start, [30, 30], stamp=capture_stamp.stamp('{"stamped": 1}', fingerprint))
    loop.on_clip("t", _clip(settings, "c3", start, 0.5, 2.5))
    assert _created(events, "h1")["copied"] is True
    [video] = store.list_videos(booking_id="c3", kind="highlight")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(0, 38))


def test_a_clip_is_cut_while_its_segment_is_still_being_written(settings, highlight_worker):
    """The clip ends mid-segment: it is ready about a GOP after its end, long before the segment closes."""
    loop, store, events = highlight_worker
    start = utc_now().replace(microsecond=0) + timedelta(seconds=1)
    _book(store, settings, "c4", start, 8)
    writer = threading.Thread(target=_segments, args=(settings, "c4", start, [120]), kwargs={"pace": True})
    writer.start()
    try:
        loop.on_clip("t", _clip(settings, "c4", start, 1.0, 3.0))
        created = _created(events, "h1", timeout=20)
        made_at = utc_now()
        assert writer.is_alive(), "the clip waited for the whole segment"
        assert (made_at - (start + timedelta(seconds=3))).total_seconds() < 2.5
    finally:
        writer.join()
    [video] = store.list_videos(booking_id="c4", kind="highlight")
    assert created["copied"] is True
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(15, 46))


def test_a_press_after_the_clip_was_made_extends_it_and_the_clip_is_made_again(settings, highlight_worker):
    loop, store, events = highlight_worker
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c5", start, 4)
    _segments(settings, "c5", start, [60])
    loop.on_clip("t", _clip(settings, "c5", start, 1.0, 2.0))
    first = _created(events, "h1")
    loop.on_clip("t", _clip(settings, "c5", start, 1.0, 3.0, presses=2))
    _, payload = events.wait_for(lambda t, p: t.endswith("/created") and json.loads(p)["presses"] == 2, 20)
    second = json.loads(payload)
    assert second["video_id"] == first["video_id"]
    [video] = store.list_videos(booking_id="c5", kind="highlight")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(15, 46))
    loop.on_clip("t", _clip(settings, "c5", start, 1.0, 3.0, presses=2))  # a redelivery changes nothing
    assert loop.table.claim("someone") is None


def test_a_clip_whose_recording_is_gone_fails_with_the_reason(settings, highlight_worker):
    loop, store, events = highlight_worker
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c6", start, 4)
    loop.on_clip("t", _clip(settings, "c6", start, 1.0, 2.0))
    _, payload = events.wait_for(lambda t, p: t.endswith("/highlight/failed"), 20)
    failed = json.loads(payload)
    assert failed["final"] is True and "no segments and no recording" in failed["reason"]
    assert store.list_videos(booking_id="c6") == []


def test_an_uploaded_bookings_segments_stay_until_its_clips_are_cut(settings, tmp_path, listen):
    """The booking's video can be uploaded (and its recording due for removal) while the highlight loop is still
    behind: the segments stay until the last clip is cut, then go at the next scan."""
    from services.video_worker.job_intake import Intake
    from services.video_worker.job_table import JobState
    from services.video_worker.upload_step import cleanup

    store = LocalStore(settings.data_dir)
    bus = MqttBus(settings, "worker")
    ctx = WorkerContext(settings, store, bus, JobTable(settings.state_dir / TABLE_FILE))
    loop = HighlightLoop(ctx)
    events = listen(f"ezrec/{settings.camera_id}/highlight/#")
    bus.start()
    assert bus.wait_connected(10)
    start = (utc_now() - timedelta(seconds=60)).replace(microsecond=0)
    _book(store, settings, "c7", start, 4)
    booking_dir = _segments(settings, "c7", start, [30, 30])
    booking_dir.finished_path.write_text("{}")
    loop.on_clip("t", _clip(settings, "c7", start, 1.0, 3.0))  # not cut yet: the loop is not running
    ctx.jobs.add("c7", "u1", "c7")
    assert ctx.jobs.claim("w/finish", [JobState.pending]) is not None
    ctx.jobs.set_state("c7", "w/finish", JobState.done)
    job = ctx.jobs.get("c7")
    cleanup(ctx, job)  # what the upload step does once the booking's video is stored
    assert len(booking_dir.segments()) == 2, "the segments went while a clip still needed them"
    assert [j.booking_id for j in ctx.jobs.uncleaned_done()] == ["c7"]
    stop = threading.Event()
    ctx.stop = stop
    thread = loop.thread(stop)
    thread.start()
    try:
        created = _created(events, "h1")
        assert events.messages and not [t for t, _, _ in events.messages if t.endswith("/highlight/failed")]
        [video] = store.list_videos(booking_id="c7", kind="highlight")
        assert created["video_id"] == video.id
        assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(15, 46))
        Intake(ctx).scan()  # the worker's periodic scan: nothing wants the recording now
        assert not booking_dir.path.exists()
        assert ctx.jobs.uncleaned_done() == []
    finally:
        stop.set()
        loop.wake.set()
        thread.join(30)
        bus.stop()
