"""Finish by remux, and every reason it falls back to a transcode: real segments, real worker, real broker.

Segments are written like the recorder writes raw-frame sources (logos blended before the one encode,
stamped with the format and logo fingerprint); the worker runs in-process against a real Mosquitto.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from services.video_worker.media.remux_check import Reason, parameter_sets
from shared import spliced_file
from shared.capture_stamp import NO_LOGOS
from shared.models import BookingIn, BookingStatus, UserSettings
from shared.overlay import LogoSpec
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.media import ffmpeg_errors, make_intro, make_logo_png, open_media, probe
from tests.video_worker.segments import capture_format, frame_numbers, record_stamped_segments

FPS = 15
SIZE = (320, 240)
COUNTS = [15, 15, 9]
TOTAL = sum(COUNTS)
INTRO_S = 1.0
INTRO_FRAMES = 15


@pytest.fixture
def fmt():
    return capture_format(SIZE, FPS)


def _media(store: LocalStore, tmp_path: Path, *, intro: bool = True, logo: bool = True,
           intro_bytes: bytes | None = None) -> Path:
    """The user's intro (with audio) and logo, as the API stores them; returns the logo's local file."""
    logo_path = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=4)
    intro_path = make_intro(tmp_path / "intro.mp4", INTRO_S, size=(320, 240), fps=25, audio=True)
    if intro_bytes is not None:
        intro_path.write_bytes(intro_bytes)
    if intro:
        store.put_object("media", "u1/media/intro-x.mp4", intro_path, "video/mp4")
    if logo:
        store.put_object("media", "u1/media/logo-x.png", logo_path, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", intro_video_path="u1/media/intro-x.mp4" if intro else None,
                                         logo_path="u1/media/logo-x.png" if logo else None))
    return logo_path


def _booking(settings, store, booking_id, **kwargs):
    start = (utc_now() - timedelta(seconds=TOTAL / FPS + 1)).replace(microsecond=0)
    end = start + timedelta(seconds=TOTAL / FPS)
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start, end_time=end)],
                          settings.camera_id)
    return record_stamped_segments(settings.raw_dir, booking_id, "u1", start, COUNTS, end=end, **kwargs)


def _run_to_upload(settings, store, run_worker, listen, booking_id, segments):
    events = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    for seg in segments:
        bus.publish(bus.topics.recording_segment, seg.event(booking_id, settings.camera_id, "u1"))
    deadline = utc_now() + timedelta(seconds=90)
    while utc_now() < deadline and store.get_booking(booking_id).status != BookingStatus.video_uploaded:
        threading.Event().wait(0.1)
    assert store.get_booking(booking_id).status == BookingStatus.video_uploaded
    [video] = store.list_videos(booking_id=booking_id)
    return worker, events, store.local_object_path("videos", video.storage_path)


def _processed(events) -> dict:
    """The one video/processed event (its delivery may trail the store's status by a moment)."""
    events.wait_for(lambda t, p: t.endswith("/video/processed"), timeout=20)
    [payload] = [json.loads(p) for t, p, _ in events.messages if t.endswith("/video/processed")]
    return payload


def _progress(events) -> list[dict]:
    return [json.loads(p) for t, p, _ in events.messages if t.endswith("/video/progress")]


def _decodes_cleanly(path: Path) -> None:
    """No error from the ffmpeg CLI nor from PyAV decoding every frame."""
    assert ffmpeg_errors(path) == ""
    with open_media(path) as c:
        for stream in c.streams:
            stream.thread_type = "AUTO"
        frames = sum(1 for _ in c.decode(*c.streams))
    assert frames > 0


def _logo_box_red(path: Path, indices: list[int]) -> list[bool]:
    """Whether the top-right logo's body (red) shows on each frame of `indices`."""
    wanted = set(indices)
    found: dict[int, bool] = {}
    with open_media(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                rgb = frame.to_ndarray(format="rgb24").astype(int)
                h, w = rgb.shape[:2]
                region = rgb[: h // 4, w - w // 4:]
                red = (region[..., 0] > 180) & (region[..., 1] < 90) & (region[..., 2] < 90)
                found[i] = bool(red.sum() > 100)
            if i >= max(wanted):
                break
    return [found[i] for i in indices]


def _checks(path: Path, *, audio: bool = True, intro_frames: int = INTRO_FRAMES) -> None:
    info = probe(path)
    assert info["frames"] == intro_frames + TOTAL
    assert abs(info["duration"] - (intro_frames / FPS + TOTAL / FPS)) <= 1 / FPS, info
    assert info["has_audio"] == audio
    assert frame_numbers(path, skip=intro_frames) == list(range(TOTAL)), "every recorded frame, in order, once"
    _decodes_cleanly(path)
    with spliced_file.open_read(path) as fh:
        head = fh.read(1 << 16)
    assert head.find(b"moov") < head.find(b"mdat") or head.find(b"mdat") < 0, "+faststart: the index first"


# ------------------------------------------------------------------------------------------- remux


def test_stamped_segments_become_the_video_by_remux(settings, tmp_path, run_worker, listen, fmt):
    store = LocalStore(settings.data_dir)
    logo = _media(store, tmp_path)
    _dir, segments = _booking(settings, store, "r1", fmt=fmt, logos=[LogoSpec(path=logo, corner="top-right")])
    inodes = {s.path.stat().st_ino for s in segments}
    parts_seen: list[int] = []
    original = __import__("services.video_worker.media.remux_check", fromlist=["link_piece"]).link_piece

    def spy(segment, target):
        original(segment, target)
        parts_seen.append(target.stat().st_ino)

    import services.video_worker.part_step as part_step
    part_step.link_piece = spy
    try:
        worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "r1", segments)
    finally:
        part_step.link_piece = original
    assert set(parts_seen) == inodes, "the segments themselves are the pieces: not one byte copied"
    job = worker.jobs.get("r1")
    assert job.route == "remux" and job.route_reasons == []
    assert all(p.route == "remux" for p in worker.jobs.parts("r1"))
    assert _processed(events)["route"] == "remux"
    assert any(p.get("route") == "remux" for p in _progress(events))
    _checks(stored)
    intro_flags = _logo_box_red(stored, list(range(INTRO_FRAMES)))
    rec_flags = _logo_box_red(stored, list(range(INTRO_FRAMES, INTRO_FRAMES + TOTAL)))
    assert not any(intro_flags), "the logo is never on the intro"
    assert all(rec_flags), "the logo (blended at capture) is on every recording frame"


def test_an_unusable_intro_still_remuxes_without_it(settings, tmp_path, run_worker, listen, fmt):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path, logo=False, intro_bytes=b"\x00\x00\x00\x18ftypisom" + bytes(4000))
    _dir, segments = _booking(settings, store, "r2", fmt=fmt)
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "r2", segments)
    assert worker.jobs.get("r2").route == "remux"
    assert any(w.startswith("intro") for w in _processed(events)["warnings"])
    _checks(stored, audio=False, intro_frames=0)


# --------------------------------------------------------------------------------------- fallbacks


def _assert_transcoded(worker, events, booking_id: str, reason: Reason) -> None:
    job = worker.jobs.get(booking_id)
    assert job.route == "transcode" and reason.value in job.route_reasons, job
    assert {p.route_reason for p in worker.jobs.parts(booking_id)} - {None} == {reason.value}
    processed = _processed(events)
    assert processed["route"] == "transcode" and reason.value in processed["route_reasons"]
    assert any(p.get("route") == "transcode" and p.get("reason") == reason.value for p in _progress(events))


def test_a_remuxed_camera_source_is_transcoded_with_the_logo(settings, tmp_path, run_worker, listen):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path)
    _dir, segments = _booking(settings, store, "t1", fmt=capture_format(SIZE, FPS), stamped=False)  # camera's packets
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "t1", segments)
    _assert_transcoded(worker, events, "t1", Reason.remuxed_source)
    _checks(stored)
    assert all(_logo_box_red(stored, [INTRO_FRAMES, INTRO_FRAMES + TOTAL - 1]))
    assert not any(_logo_box_red(stored, [0, INTRO_FRAMES - 1]))


def test_a_logo_set_after_the_booking_started_is_transcoded_in(settings, tmp_path, run_worker, listen, fmt):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path)  # the user's logo now; capture drew none
    _dir, segments = _booking(settings, store, "t2", fmt=fmt, logos=[], stamp_logos=NO_LOGOS)
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "t2", segments)
    _assert_transcoded(worker, events, "t2", Reason.logo_changed)
    _checks(stored)
    assert all(_logo_box_red(stored, [INTRO_FRAMES, INTRO_FRAMES + TOTAL - 1]))
    assert not any(_logo_box_red(stored, [0, INTRO_FRAMES - 1]))


def test_other_parameter_sets_are_transcoded_and_join_the_intro(settings, tmp_path, run_worker, listen, fmt):
    """The stamp says the booking's format but the encoder that wrote it made other SPS/PPS (another
    profile and entropy coder: what a different encoder build or the Pi's hardware encoder gives)."""
    store = LocalStore(settings.data_dir)
    logo = _media(store, tmp_path)
    other = replace(fmt, encode=replace(fmt.encode, preset="medium"))
    _dir, segments = _booking(settings, store, "t3", fmt=fmt, encode_fmt=other,
                              logos=[LogoSpec(path=logo, corner="top-right")])
    with av.open(str(segments[0].path)) as c:
        theirs = parameter_sets(bytes(c.streams.video[0].codec_context.extradata))
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "t3", segments)
    _assert_transcoded(worker, events, "t3", Reason.parameter_sets_differ)
    with open_media(stored) as c:
        assert parameter_sets(bytes(c.streams.video[0].codec_context.extradata)) != theirs
    _checks(stored)
    flags = _logo_box_red(stored, [0, INTRO_FRAMES - 1, INTRO_FRAMES, INTRO_FRAMES + TOTAL - 1])
    assert flags == [False, False, True, True], "capture's logo kept, not drawn twice, never on the intro"


def test_segments_in_two_formats_transcode_the_odd_one(settings, tmp_path, run_worker, listen, fmt):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path, logo=False)
    odd = capture_format(SIZE, FPS, crf=30)  # a capture restarted with other settings mid-booking
    _dir, segments = _booking(settings, store, "t4", fmt=fmt, segment_fmts={1: odd})
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "t4", segments)
    routes = [(p.route, p.route_reason) for p in worker.jobs.parts("t4")]
    assert routes == [("remux", None), ("transcode", "parameter_sets_differ"), ("remux", None)]
    assert worker.jobs.get("t4").route == "transcode"
    assert _processed(events)["route_reasons"] == ["parameter_sets_differ"]
    _checks(stored)


def test_a_damaged_segment_is_transcoded_around(settings, tmp_path, run_worker, listen, fmt):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path, logo=False)
    _dir, segments = _booking(settings, store, "t5", fmt=fmt)
    segments[1].path.write_bytes(b"\x00\x00\x00\x18ftypiso5" + bytes(range(256)) * 64)  # disk damage
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "t5", segments)
    _assert_transcoded(worker, events, "t5", Reason.damaged_segment)
    assert [p.route for p in worker.jobs.parts("t5")] == ["remux", "transcode", "remux"]
    numbers = frame_numbers(stored, skip=INTRO_FRAMES)
    assert numbers == list(range(15)) + list(range(30, TOTAL)), "the damaged segment is left out, the rest kept"
    _decodes_cleanly(stored)


def test_parameter_sets_compare_avcc_with_annex_b(fmt, tmp_path):
    """The intro's parameter sets come from its encoder (Annex B), a segment's from its container (avcC)."""
    _dir, [seg] = record_stamped_segments(tmp_path, "p1", "u1", utc_now().replace(microsecond=0), [5], fmt=fmt)
    with av.open(str(seg.path)) as c:
        avcc = bytes(c.streams.video[0].codec_context.extradata)
    sps, pps = parameter_sets(avcc)
    assert avcc[0] == 1 and len(sps) == 1 and len(pps) == 1
    annexb = b"".join(b"\x00\x00\x00\x01" + u for u in (*sps, *pps))
    assert parameter_sets(annexb) == (sps, pps)
    assert np.frombuffer(sps[0][:1], np.uint8)[0] & 0x1F == 7


def test_a_segment_the_recorder_deletes_right_after_closing_is_still_remuxed(settings, tmp_path, run_worker,
                                                                             listen, fmt):
    """The recorder joins and deletes its segments moments after the booking's end: the worker holds the one
    still being written by a hard link, so the last segment is there when it closes."""
    import os
    import shutil
    import time

    from shared.payloads import RecordingFinished
    from shared.recordings.segments import join_segments

    store = LocalStore(settings.data_dir)
    _media(store, tmp_path, logo=False)
    start = (utc_now() - timedelta(seconds=TOTAL / FPS)).replace(microsecond=0)
    end = utc_now() + timedelta(seconds=3)  # not over yet: the last segment counts as open
    store.create_bookings([BookingIn(id="h1", user_id="u1", start_time=start, end_time=end)], settings.camera_id)
    booking_dir, segments = record_stamped_segments(settings.raw_dir, "h1", "u1", start, COUNTS, fmt=fmt, end=end)
    for seg in segments[:-1]:
        os.utime(seg.path, (time.time() - 10, time.time() - 10))
    events = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, bus = run_worker(store)
    held = settings.processed_dir / "h1" / "held-00002.mp4"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not held.exists():
        time.sleep(0.05)
    assert held.exists(), "the open segment is held by a hard link"
    assert worker.jobs.parts("h1")[-1].state.value == "pending"
    joined = join_segments([s.path for s in segments], booking_dir.target, start)  # the recorder's end of booking
    shutil.rmtree(booking_dir.path)
    bus.publish(bus.topics.recording_finished, RecordingFinished(
        booking_id="h1", camera_id=settings.camera_id, user_id="u1", file="h1.mp4", first_frame_at=start,
        last_frame_at=utc_now(), frames=joined.frames, size_bytes=joined.size_bytes, segments=3))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.get_booking("h1").status != BookingStatus.video_uploaded:
        time.sleep(0.1)
    assert store.get_booking("h1").status == BookingStatus.video_uploaded
    assert [p.route for p in worker.jobs.parts("h1")] == ["remux"] * 3
    assert worker.jobs.get("h1").mode == "parts" and _processed(events)["route"] == "remux"
    [video] = store.list_videos(booking_id="h1")
    _checks(store.local_object_path("videos", video.storage_path))


def test_frames_the_camera_dropped_stay_gaps_so_the_video_lasts_as_long_as_the_booking(settings, tmp_path, run_worker,
                                                                                      listen, fmt):
    store = LocalStore(settings.data_dir)
    _media(store, tmp_path, logo=False)
    dropped = frozenset({7, 15, 16, 33, 34})  # inside a segment, at a segment's start, two in a row (the last)
    _dir, segments = _booking(settings, store, "g1", fmt=fmt, dropped=dropped)
    worker, events, stored = _run_to_upload(settings, store, run_worker, listen, "g1", segments)
    assert worker.jobs.get("g1").route == "remux"
    info = probe(stored)
    assert info["frames"] == INTRO_FRAMES + TOTAL - len(dropped)
    assert abs(info["duration"] - (INTRO_FRAMES + TOTAL) / FPS) <= 1 / FPS, info
    kept = [n for n in range(TOTAL) if n not in dropped]
    assert frame_numbers(stored, skip=INTRO_FRAMES) == kept
    _decodes_cleanly(stored)


def test_the_whole_recording_fallback_reads_the_finished_folder_and_never_draws_capture_logos_twice(
        settings, tmp_path, run_worker, listen, fmt):
    """The recording is its finished segment folder (no joined file): the fallback joins it for its own encode,
    and leaves the logos capture already blended alone (a half-transparent logo shows a second blend)."""
    from services.video_worker.job_table import JobTable
    from shared.job_states import TABLE_FILE
    from shared.recordings.layout import FinishedMeta
    from shared.recordings.segments import describe_segments

    store = LocalStore(settings.data_dir)
    half = make_logo_png(tmp_path / "half.png", size=(64, 32), rgba=(255, 255, 255, 128), transparent_border=0)
    store.put_object("media", "u1/media/logo-half.png", half, "image/png")
    store.put_user_settings(UserSettings(user_id="u1", logo_path="u1/media/logo-half.png"))
    booking_dir, segments = _booking(settings, store, "w2", fmt=fmt, logos=[LogoSpec(path=half, corner="top-right")])
    meta = booking_dir.read_meta()
    counted = describe_segments([s.path for s in segments], meta.origin)
    booking_dir.write_finished(FinishedMeta(frames=counted.frames, first_frame_at=counted.first_frame_at,
                                            last_frame_at=counted.last_frame_at, size_bytes=counted.size_bytes,
                                            segments=counted.segments))
    with av.open(str(segments[0].path)) as c:  # the picture capture made (its logo blended once)
        captured = next(c.decode(video=0)).to_ndarray(format="gray").astype(float)
    table = JobTable(settings.state_dir / TABLE_FILE)
    table.add("w2", "u1", "w2", counted.frames)
    table.reopen("w2", "whole", "test: the segments could not make the video")
    table.close()
    events = listen(f"ezrec/{settings.camera_id}/video/#")
    worker, _bus = run_worker(store)
    deadline = utc_now() + timedelta(seconds=90)
    while utc_now() < deadline and store.get_booking("w2").status != BookingStatus.video_uploaded:
        threading.Event().wait(0.1)
    assert store.get_booking("w2").status == BookingStatus.video_uploaded
    job = worker.jobs.get("w2")
    assert job.mode == "whole" and job.route == "transcode" and job.route_reasons == ["whole_recording"]
    assert _processed(events)["route_reasons"] == ["whole_recording"]
    [video] = store.list_videos(booking_id="w2")
    stored = store.local_object_path("videos", video.storage_path)
    assert frame_numbers(stored) == list(range(TOTAL))
    with av.open(str(stored)) as c:
        finished = next(c.decode(video=0)).to_ndarray(format="gray").astype(float)
    h, w = captured.shape
    blocks = lambda a: a[: h // 8 * 8, : w // 8 * 8].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))  # noqa: E731
    assert np.abs(blocks(finished) - blocks(captured)).max() < 8, "the logo is blended once, at capture"
    assert not booking_dir.path.exists(), "the segment folder goes once the video is uploaded"
    assert not list(settings.processed_dir.rglob("whole-input.mp4")), "the fallback's joined copy is removed"


def test_a_camera_that_drew_the_logos_itself_never_gets_them_drawn_twice(tmp_path):
    """Picamera2's segments carry the logo stamp but no format stamp (its own encoder): the fallback transcode
    they take must not blend the booking's logos over the ones the camera's pre_callback already drew."""
    from fractions import Fraction

    from services.video_worker.media.remux_check import SegmentHeader, logos_to_draw, remux_blocker
    from shared.capture_stamp import logo_fingerprint

    logo = make_logo_png(tmp_path / "logo.png")
    specs = [LogoSpec(path=logo, corner="top-right")]
    booking = logo_fingerprint(specs)
    drawn_by_camera = SegmentHeader(format_json=None, logos=booking, extradata=b"", time_base=Fraction(1, 1000),
                                    has_audio=False)
    assert remux_blocker(drawn_by_camera, None, booking, None, None)[0] == Reason.remuxed_source  # type: ignore[arg-type,index]
    assert logos_to_draw(drawn_by_camera, specs, booking) == []
    other = SegmentHeader(format_json=None, logos="0123456789abcdef", extradata=b"", time_base=Fraction(1, 1000),
                          has_audio=False)
    assert logos_to_draw(other, specs, booking) == specs  # the camera drew other logos: the booking's go on top
    copied = SegmentHeader(format_json=None, logos=None, extradata=b"", time_base=Fraction(1, 1000), has_audio=False)
    assert logos_to_draw(copied, specs, booking) == specs  # an IP camera's packets: nothing was drawn
