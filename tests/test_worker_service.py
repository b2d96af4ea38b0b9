"""The worker service end to end on its own: job intake, processing, upload, clean-up, retries."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

from services.video_worker import job_table as jobs_module
from shared.file_hash import file_sha256
from shared.models import BookingIn, BookingStatus, LogoPlacement, UserSettings
from shared.payloads import MediaUpdated, RecordingFinished, RecordingSegment
from shared.recordings.segments import join_segments
from shared.store import LocalStore
from shared.timeutil import utc_now
from shared.topics import MEDIA_UPDATED
from tests.media import (
    assert_box_near,
    colour_box,
    expected_logo_body,
    frames_rgb,
    make_intro,
    make_logo_png,
    make_recording,
    probe,
)
from tests.video_worker.segments import frame_numbers, record_segments


class FlakyStore(LocalStore):
    """The cloud is away for the first `failures` uploads."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.upload_calls = 0

    def put_object(self, bucket, path, src, content_type):  # type: ignore[override]
        if bucket == "videos":
            self.upload_calls += 1
            if self.upload_calls <= self.failures:
                raise ConnectionError("cloud unreachable")
        return super().put_object(bucket, path, src, content_type)


def _setup(settings, store, tmp_path, booking_id="b1", with_media=True, ago=10.0) -> Path:
    start = utc_now() - timedelta(seconds=ago)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(seconds=2))], settings.camera_id)
    store.advance_booking_status(booking_id, BookingStatus.completed)
    raw = make_recording(settings.raw_dir / f"{booking_id}.mp4", 2.0, size=(320, 240), fps=15)
    if with_media:
        intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
        logo = make_logo_png(tmp_path / "logo.png")
        store.put_object("media", "u1/media/intro-x.mp4", intro, "video/mp4")
        store.put_object("media", "u1/media/logo-x.png", logo, "image/png")
        store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4",
                                             logo_path="u1/media/logo-x.png"))
    return raw


def test_recording_finished_event_becomes_an_uploaded_video(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    raw = _setup(settings, store, tmp_path)
    uploaded = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    _finished(bus, settings, "b1", raw, 30)
    uploaded.wait_for(lambda t, p: t.endswith("/video/uploaded"), timeout=60)
    topics = [t.rsplit("/", 1)[-1] for t, _, _ in uploaded.messages if not t.endswith("progress")]
    assert topics.index("processed") < topics.index("uploaded")
    [video] = store.list_videos(booking_id="b1")
    assert video.storage_path == "u1/b1.mp4" and video.user_id == "u1"
    stored = store.local_object_path("videos", video.storage_path)
    info = probe(stored)
    assert abs(info["duration"] - 3.0) <= 2 / 15
    assert store.get_booking("b1").status == BookingStatus.video_uploaded
    assert not raw.exists() and not (settings.processed_dir / "b1.mp4").exists()


def test_missed_event_is_recovered_by_the_scan(settings, tmp_path, run_worker):
    store = LocalStore(settings.data_dir)
    _setup(settings, store, tmp_path, with_media=False)
    run_worker(store)  # no event published: the directory scan must find the recording
    deadline = utc_now() + timedelta(seconds=60)
    while utc_now() < deadline and store.get_booking("b1").status != BookingStatus.video_uploaded:
        threading.Event().wait(0.2)
    assert store.get_booking("b1").status == BookingStatus.video_uploaded
    assert len(store.list_videos(booking_id="b1")) == 1


def test_failed_uploads_retry_and_never_delete_the_only_copy(settings, tmp_path, run_worker, listen, monkeypatch):
    monkeypatch.setattr(jobs_module, "backoff_s", lambda attempts: 0.3)
    store = FlakyStore(settings.data_dir, failures=2)
    raw = _setup(settings, store, tmp_path, with_media=False)
    failures = listen(f"ezrec/{settings.camera_id}/video/failed")
    worker, _ = run_worker(store)
    failures.wait_for(lambda t, p: json.loads(p)["element"] == "upload", timeout=60)
    assert raw.exists() or (settings.processed_dir / "b1.mp4").exists(), "a local copy must remain"
    assert store.get_booking("b1").status != BookingStatus.video_uploaded
    deadline = utc_now() + timedelta(seconds=30)
    while utc_now() < deadline and store.get_booking("b1").status != BookingStatus.video_uploaded:
        threading.Event().wait(0.2)
    assert store.upload_calls == 3
    assert len(store.list_videos(booking_id="b1")) == 1
    # The raw recording is removed right after the status turns uploaded (never before): allow that moment.
    deadline = utc_now() + timedelta(seconds=10)
    while utc_now() < deadline and raw.exists():
        threading.Event().wait(0.1)
    assert not raw.exists()


def test_unreadable_recording_is_kept_and_reported(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    start = utc_now() - timedelta(seconds=10)
    store.create_bookings([BookingIn(id="bad", user_id="u1", start_time=start,
                                     end_time=start + timedelta(seconds=2))], settings.camera_id)
    raw = settings.raw_dir / "bad.mp4"
    raw.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    failed = listen(f"ezrec/{settings.camera_id}/video/failed")
    run_worker(store)
    _, payload = failed.wait_for(lambda t, p: json.loads(p)["booking_id"] == "bad", timeout=30)
    event = json.loads(payload)
    assert event["element"] == "recording" and event["final"] is True
    assert raw.exists(), "an unreadable recording is evidence: never deleted"


# ---------------------------------------------------------------------------------- segments


def _segment_booking(settings, store, booking_id, counts, *, start=None, fps=15, user="u1"):
    """A booking that ended a moment ago, recorded as recorder segments of `counts` frames each."""
    total = sum(counts)
    start = start or (utc_now() - timedelta(seconds=total / fps + 1)).replace(microsecond=0)
    end = start + timedelta(seconds=total / fps)
    store.create_bookings([BookingIn(id=booking_id, user_id=user, start_time=start, end_time=end)],
                          settings.camera_id)
    return record_segments(settings.raw_dir, booking_id, user, start, counts, fps=fps, end=end)


def _settle(predicate, timeout: float = 20.0) -> bool:
    """Wait for the worker's threads to act on an event: True once `predicate` holds."""
    deadline = utc_now() + timedelta(seconds=timeout)
    while utc_now() < deadline and not predicate():
        threading.Event().wait(0.05)
    return predicate()


def _wait_status(store, booking_id, status, timeout=60.0):
    deadline = utc_now() + timedelta(seconds=timeout)
    while utc_now() < deadline and store.get_booking(booking_id).status != status:
        threading.Event().wait(0.1)
    return store.get_booking(booking_id).status


def test_segments_become_the_video_before_the_recording_is_joined(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
    store.put_object("media", "u1/media/intro-x.mp4", intro, "video/mp4")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4"))
    booking_dir, segments = _segment_booking(settings, store, "s1", [15, 15, 9])
    events = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    for seg in segments:
        bus.publish(bus.topics.recording_segment, seg.event("s1", settings.camera_id, "u1"))
    assert _wait_status(store, "s1", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    [video] = store.list_videos(booking_id="s1")
    stored = store.local_object_path("videos", video.storage_path)
    intro_frames = 15
    assert frame_numbers(stored, skip=intro_frames) == list(range(39)), "every recorded frame, in order, once"
    info = probe(stored)
    assert info["frames"] == intro_frames + 39 and abs(info["duration"] - (1.0 + 39 / 15)) <= 1 / 15
    assert worker.jobs.get("s1").mode == "parts"
    progress = [json.loads(p) for t, p, _ in events.messages if t.endswith("/video/progress")]
    assert progress and progress[-1]["percent"] == 100.0 and all(0 <= p["percent"] <= 100 for p in progress)
    # The recorder joins its segments and announces it: the worker checks the count and removes the recording.
    raw = make_recording(settings.raw_dir / "s1.mp4", 39 / 15, size=(320, 240), fps=15)
    bus.publish(bus.topics.recording_finished, RecordingFinished(
        booking_id="s1", camera_id=settings.camera_id, user_id="u1", file="s1.mp4", first_frame_at=utc_now(),
        last_frame_at=utc_now(), frames=39, size_bytes=raw.stat().st_size, segments=3))
    deadline = utc_now() + timedelta(seconds=20)
    while utc_now() < deadline and raw.exists():
        threading.Event().wait(0.1)
    assert not raw.exists() and worker.jobs.get("s1").mode == "parts", "not processed a second time"
    assert not (settings.processed_dir / "s1").exists() and not (settings.processed_dir / "s1.mp4").exists()
    assert len(store.list_videos(booking_id="s1")) == 1


def _publish_segments(bus, settings, booking_id, segments, user="u1"):
    for seg in segments:
        bus.publish(bus.topics.recording_segment, seg.event(booking_id, settings.camera_id, user))


def _finished(bus, settings, booking_id, raw, frames, user="u1"):
    bus.publish(bus.topics.recording_finished, RecordingFinished(
        booking_id=booking_id, camera_id=settings.camera_id, user_id=user, file=raw.name, first_frame_at=utc_now(),
        last_frame_at=utc_now(), frames=frames, size_bytes=raw.stat().st_size))


def test_corrupt_segment_is_skipped_with_a_warning(settings, run_worker, listen):
    store = LocalStore(settings.data_dir)
    _, segments = _segment_booking(settings, store, "c1", [15, 15, 15])
    segments[1].path.write_bytes(b"\x00\x00\x00\x18ftypiso5" + bytes(range(256)) * 64)  # disk damage
    failed = listen(f"ezrec/{settings.camera_id}/video/failed")
    worker, bus = run_worker(store)
    _publish_segments(bus, settings, "c1", segments)
    assert _wait_status(store, "c1", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    [video] = store.list_videos(booking_id="c1")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == [*range(15), *range(30, 45)]
    _, payload = failed.wait_for(lambda t, p: "seg-00001" in json.loads(p)["reason"], timeout=10)
    event = json.loads(payload)
    assert event["element"] == "recording" and event["final"] is False


def test_segments_lost_before_processing_fall_back_to_the_whole_recording(settings, run_worker):
    store = LocalStore(settings.data_dir)
    booking_dir, segments = _segment_booking(settings, store, "w1", [15, 15, 12])
    # A recorder before issue 12 joined the segments and removed them before the worker saw all of them: the
    # joined file is made aside and appears in RAW only after the worker has taken the first segment (made in
    # RAW from the start, the worker's start-up scan would take it whole before any segment).
    aside = settings.data_dir / "aside" / booking_dir.target.name
    aside.parent.mkdir()
    join_segments([s.path for s in segments], aside, booking_dir.read_meta().origin)
    for seg in segments[1:]:
        seg.path.unlink()
    worker, bus = run_worker(store)
    _publish_segments(bus, settings, "w1", segments[:1])  # the worker saw the first segment only
    assert _settle(lambda: any(p.state == "done" for p in worker.jobs.parts("w1")))
    shutil.rmtree(booking_dir.path)
    raw = aside.replace(booking_dir.target)
    _finished(bus, settings, "w1", raw, 42)
    assert _wait_status(store, "w1", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    [video] = store.list_videos(booking_id="w1")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(42))
    assert worker.jobs.get("w1").mode == "whole" and not raw.exists()


def test_video_made_early_is_made_again_when_the_recording_holds_more(settings, tmp_path, run_worker):
    """The segments reached the booking's end, but the joined recording has more frames (end moved): redo."""
    store = LocalStore(settings.data_dir)
    booking_dir, segments = _segment_booking(settings, store, "m1", [15, 15])
    worker, bus = run_worker(store)
    _publish_segments(bus, settings, "m1", segments)
    assert _wait_status(store, "m1", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    assert worker.jobs.get("m1").mode == "parts"
    _, longer = record_segments(tmp_path / "other", "m1", "u1", segments[0].start_at, [15, 15, 10], fps=15)
    raw = join_segments([s.path for s in longer], booking_dir.target, segments[0].start_at).path
    _finished(bus, settings, "m1", raw, 40)
    deadline = utc_now() + timedelta(seconds=30)
    while utc_now() < deadline and (worker.jobs.get("m1").mode != "whole" or worker.jobs.get("m1").state != "done"):
        threading.Event().wait(0.1)
    [video] = store.list_videos(booking_id="m1")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(40))
    assert not raw.exists()


def test_the_users_logo_placements_are_drawn_where_the_settings_say(settings, tmp_path, run_worker):
    """The user's logo bottom-left at 0.3 of the width, a sponsor top-left at 0.2 with no margin, the second
    sponsor left to the default (the first free default corner: top-right). Segments, so through the plan."""
    store = LocalStore(settings.data_dir)
    colours = {"logo-r.png": (255, 0, 0, 255), "sponsor-g.png": (0, 255, 0, 255), "sponsor-b.png": (0, 0, 255, 255)}
    for name, rgba in colours.items():
        store.put_object("media", f"u1/media/{name}", make_logo_png(tmp_path / name, rgba=rgba), "image/png")
    store.put_user_settings(UserSettings(
        user_id="u1", logo_path="u1/media/logo-r.png",
        sponsor_logo_paths=["u1/media/sponsor-g.png", "u1/media/sponsor-b.png"],
        logo_placement=LogoPlacement(corner="bottom-left", width_fraction=0.3, margin_fraction=0.02),
        sponsor_logo_placements=[LogoPlacement(corner="top-left", width_fraction=0.2, margin_fraction=0.0)]))
    _, segments = _segment_booking(settings, store, "p1", [15, 15])
    worker, bus = run_worker(store)
    _publish_segments(bus, settings, "p1", segments)
    assert _wait_status(store, "p1", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    assert worker.jobs.plan("p1")["placements"] == [
        {"corner": "bottom-left", "width_fraction": 0.3, "margin_fraction": 0.02},
        {"corner": "top-left", "width_fraction": 0.2, "margin_fraction": 0.0}, None]
    [video] = store.list_videos(booking_id="p1")
    frame = frames_rgb(store.local_object_path("videos", video.storage_path), [20])[20]
    size = (frame.shape[1], frame.shape[0])
    assert_box_near(colour_box(frame, (255, 0, 0)), expected_logo_body(size, "bottom-left", 0.3, 0.02))
    assert_box_near(colour_box(frame, (0, 255, 0)), expected_logo_body(size, "top-left", 0.2, 0.0))
    assert_box_near(colour_box(frame, (0, 0, 255)), expected_logo_body(size, "top-right", 0.15, 0.02))


def test_media_updates_fetch_prepare_and_invalidate(settings, tmp_path, run_worker):
    from services.video_worker.media.process import EncodeSettings
    from shared.video_format import OutputFormat

    store = LocalStore(settings.data_dir)
    worker, bus = run_worker(store)
    intros = worker.ctx.intros
    fmt = OutputFormat(width=320, height=240, rate=Fraction(15), pix_fmt="yuv420p", full_range=False, bt709=False,
                       colour=(("color_range", 1),), encode=EncodeSettings(preset="ultrafast"))
    intros.remember_format(fmt)  # as after any processed recording of this camera
    a = make_intro(tmp_path / "a.mp4", 0.5, size=(320, 240), fps=15)
    b = make_intro(tmp_path / "b.mp4", 0.6, size=(320, 240), fps=15)
    for name, path in (("intro-a.mp4", a), ("intro-b.mp4", b)):
        store.put_object("media", f"u1/media/{name}", path, "video/mp4")

    def use(intro: str | None) -> None:
        store.put_user_settings(UserSettings(user_id="u1", intro_video_path=intro))
        bus.publish(MEDIA_UPDATED, MediaUpdated(user_id="u1", kind="intro", path=intro))

    def prepared(path: Path) -> bool:
        return intros.lookup(file_sha256(path), fmt) is not None

    cached = settings.media_dir / "u1" / "media"
    use("u1/media/intro-a.mp4")
    assert _settle(lambda: prepared(a)), "new intro fetched and prepared before any booking needs it"
    assert (cached / "intro-a.mp4").is_file()
    use("u1/media/intro-b.mp4")
    assert _settle(lambda: prepared(b) and not prepared(a)), "replaced intro: its preparation dropped"
    assert not (cached / "intro-a.mp4").exists()
    use(None)
    assert _settle(lambda: not prepared(b) and not (cached / "intro-b.mp4").exists()), "removed intro dropped"


def test_changed_settings_apply_to_the_next_booking_even_without_an_event(settings, tmp_path, run_worker):
    store = LocalStore(settings.data_dir)
    a = make_intro(tmp_path / "a.mp4", 1.0, size=(320, 240), fps=15)
    b = make_intro(tmp_path / "b.mp4", 0.4, size=(320, 240), fps=15)
    store.put_object("media", "u1/media/intro-a.mp4", a, "video/mp4")
    store.put_object("media", "u1/media/intro-b.mp4", b, "video/mp4")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-a.mp4"))
    _setup(settings, store, tmp_path, "first", with_media=False, ago=60)
    worker, _ = run_worker(store)
    assert _wait_status(store, "first", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    prepared_a = list((settings.media_dir / ".prepared").glob("*.mp4"))
    assert len(prepared_a) == 1
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-b.mp4"))  # no event
    _setup(settings, store, tmp_path, "second", with_media=False)
    assert _wait_status(store, "second", BookingStatus.video_uploaded) == BookingStatus.video_uploaded
    [first] = store.list_videos(booking_id="first")
    [second] = store.list_videos(booking_id="second")
    assert probe(store.local_object_path("videos", first.storage_path))["frames"] == 15 + 30
    assert probe(store.local_object_path("videos", second.storage_path))["frames"] == 6 + 30
    assert not (settings.media_dir / "u1" / "media" / "intro-a.mp4").exists(), "the old intro left the cache"
    assert not prepared_a[0].exists(), "and its preparation with it"


def test_video_is_joined_along_with_the_last_segments(settings, run_worker, caplog):
    """Near its end, a booking's join streams: it copies each segment as soon as it is processed."""
    from services.recorder.camera import CapturedFrame
    from services.recorder.writer import EncodeSpec, SegmentWriter
    from shared.payloads import RecordingSegment, ScheduledBooking
    from shared.recordings.layout import BookingDir
    from tests.video_worker.segments import numbered_frame

    store = LocalStore(settings.data_dir)
    fps, per_segment, total = 15, 15, 75
    start = utc_now().replace(microsecond=0) - timedelta(seconds=2)
    end = start + timedelta(seconds=total / fps)
    store.create_bookings([BookingIn(id="live", user_id="u1", start_time=start, end_time=end)], settings.camera_id)
    booking_dir = BookingDir(settings.raw_dir, "live")
    meta = booking_dir.ensure_meta(ScheduledBooking(id="live", user_id="u1", start_time=start, end_time=end,
                                                    status="confirmed"), origin=start)
    caplog.set_level("INFO", logger="services.video_worker")
    worker, bus = run_worker(store)

    def record() -> None:  # the recorder, at the camera's pace
        for first in range(0, total, per_segment):
            index, path = booking_dir.next_segment()
            writer = SegmentWriter(path, meta.origin, encode=EncodeSpec(320, 240, fps))
            for n in range(first, first + per_segment):
                at = start + timedelta(seconds=n / fps)
                threading.Event().wait(max(0.0, (at - utc_now()).total_seconds()))
                writer.write(CapturedFrame(numbered_frame(n, (320, 240)), at))
            writer.close()
            bus.publish(bus.topics.recording_segment, RecordingSegment(
                booking_id="live", camera_id=settings.camera_id, user_id="u1", index=index,
                file=booking_dir.relative(path), start_at=writer.first_at, end_at=writer.last_at,
                frames=writer.frames, size_bytes=writer.size_bytes))

    recorder = threading.Thread(target=record)
    recorder.start()
    recorder.join()
    assert _wait_status(store, "live", BookingStatus.video_uploaded, timeout=30) == BookingStatus.video_uploaded
    [video] = store.list_videos(booking_id="live")
    assert frame_numbers(store.local_object_path("videos", video.storage_path)) == list(range(total))
    assert "streamed join" in caplog.text and worker.jobs.get("live").mode == "parts"


def test_events_naming_files_outside_the_recorder_layout_are_set_aside(settings, run_worker, listen):
    store = LocalStore(settings.data_dir)
    dead = listen("ezrec/deadletter")
    worker, bus = run_worker(store)
    bus.publish(bus.topics.recording_segment, RecordingSegment(
        booking_id="x1", camera_id=settings.camera_id, user_id="u1", index=0, file="../../state/worker-jobs.db",
        start_at=utc_now(), end_at=utc_now(), frames=1))
    bus.publish(bus.topics.recording_finished, RecordingFinished(
        booking_id="x1", camera_id=settings.camera_id, user_id="u1", file="../x1.mp4", first_frame_at=utc_now(),
        last_frame_at=utc_now(), frames=1, size_bytes=1))
    dead.wait_for(lambda t, p: json.loads(p)["topic"].endswith("/recording/finished"), timeout=10)
    dead.wait_for(lambda t, p: json.loads(p)["topic"].endswith("/recording/segment"), timeout=10)
    assert worker.jobs.parts("x1") == [] and worker.jobs.get("x1") is None


def test_a_corrupt_intro_and_logo_are_reported_and_the_recording_still_delivered(settings, tmp_path, run_worker,
                                                                               listen):
    """The player's recording never pays for bad media: each bad element is a `video/failed` warning."""
    store = LocalStore(settings.data_dir)
    raw = _setup(settings, store, tmp_path, booking_id="bad1", with_media=False)
    intro = make_intro(tmp_path / "intro.mp4", 1.0, size=(320, 240), fps=25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(intro.read_bytes()[: intro.stat().st_size // 3])
    not_png = tmp_path / "logo.png"
    not_png.write_bytes(b"GIF89a but not really an image")
    store.put_object("media", "u1/media/intro-t.mp4", truncated, "video/mp4")
    store.put_object("media", "u1/media/logo-t.png", not_png, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-t.mp4",
                                         logo_path="u1/media/logo-t.png"))
    events = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    _finished(bus, settings, "bad1", raw, 30)
    events.wait_for(lambda t, p: t.endswith("/video/uploaded"), timeout=60)
    failed = [json.loads(p) for t, p, _ in events.messages if t.endswith("/video/failed")]
    assert {f["element"] for f in failed} >= {"intro", "logo"}, failed
    assert all(f["booking_id"] == "bad1" and f["reason"] and not f["final"] for f in failed)
    [video] = store.list_videos(booking_id="bad1")
    info = probe(store.local_object_path("videos", video.storage_path))
    assert abs(info["duration"] - 2.0) <= 2 / 15, "the recording alone, whole"
    assert store.get_booking("bad1").status == BookingStatus.video_uploaded
    progress = [json.loads(p) for t, p, _ in events.messages if t.endswith("/video/progress")]
    assert progress and all(p["fps"] >= 0 for p in progress) and any(p["fps"] > 0 for p in progress)


def test_media_updates_fetch_and_drop_logos_and_sponsor_logos(settings, tmp_path, run_worker):
    """The cache follows the settings for every logo too: fetched when named, dropped when no longer named."""
    store = LocalStore(settings.data_dir)
    worker, bus = run_worker(store)
    for name in ("logo-a.png", "sponsor-1.png", "sponsor-2.png"):
        store.put_object("media", f"u1/media/{name}", make_logo_png(tmp_path / name), "image/png")
    cached = settings.media_dir / "u1" / "media"

    def use(logo: str | None, sponsors: list[str]) -> None:
        store.put_user_settings(UserSettings(user_id="u1", logo_path=logo, sponsor_logo_paths=sponsors))
        bus.publish(MEDIA_UPDATED, MediaUpdated(user_id="u1", kind="logo", path=logo))

    def present() -> set[str]:
        return {p.name for p in cached.glob("*.png")} if cached.is_dir() else set()

    use("u1/media/logo-a.png", ["u1/media/sponsor-1.png", "u1/media/sponsor-2.png"])
    assert _settle(lambda: present() == {"logo-a.png", "sponsor-1.png", "sponsor-2.png"}), present()
    use("u1/media/logo-a.png", ["u1/media/sponsor-2.png"])  # one sponsor removed
    assert _settle(lambda: present() == {"logo-a.png", "sponsor-2.png"}), present()
    use(None, [])  # the user removes every logo
    assert _settle(lambda: present() == set()), present()
