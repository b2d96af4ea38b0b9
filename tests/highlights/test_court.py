"""Highlights during a real recording: the mock GPIO button, an MQTT request and the API each make a clip of the
right span and content, linked to the booking; 20 presses leave the booking's full video intact; presses outside
a recording are refused with a clear event."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np

from shared.recordings.timeline import capture_times
from tests.highlights.conftest import AUTH, Court, sleep_until
from tests.media import open_media

FPS = 15


def _gray_frames(path) -> list[np.ndarray]:
    with open_media(path) as c:
        return [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]


def _full_video(court: Court, booking_id: str) -> tuple[object, dict]:
    assert court.wait(lambda: any(p["booking_id"] == booking_id for p in court.event_payloads("/video/uploaded")),
                      90), "the booking's video was not made"
    [finished] = [p for p in court.event_payloads("/recording/finished") if p["booking_id"] == booking_id]
    [video] = court.store.list_videos(booking_id=booking_id, kind="full")
    return video, finished


def _check_clip(court: Court, video, full_frames: list[np.ndarray], first_frame_at: datetime) -> list[datetime]:
    """Playable, on the booking's timeline, and showing what the full video shows at the same capture times."""
    path = court.store.local_object_path("videos", video.storage_path)
    frames = _gray_frames(path)
    times = capture_times(path)
    assert len(frames) == len(times) > 0
    steps = np.diff([t.timestamp() for t in times])
    assert np.all(np.abs(steps - 1 / FPS) < 0.02), "the clip skips or repeats frames"
    for frame, at in zip(frames[::5], times[::5], strict=False):
        index = round((at - first_frame_at).total_seconds() * FPS)
        same = np.abs(frame - full_frames[index]).mean()
        other = np.abs(frame - full_frames[min(len(full_frames) - 1, index + FPS // 2)]).mean()
        assert same < 6 and other > same + 2, (same, other)
    return times


def test_button_mqtt_and_api_each_make_a_clip_during_a_recording(court: Court):
    start = court.book("court1", in_s=1, seconds=9)
    assert court.wait(lambda: court.recorder.recording_now == "court1", 10)
    sleep_until(start + timedelta(seconds=3))
    court.press_button()
    sleep_until(start + timedelta(seconds=5))
    court.publish(b"")  # an empty payload is a press, as a Zigbee button through Home Assistant sends it
    sleep_until(start + timedelta(seconds=7))
    answer = court.api.post("/bookings/court1/highlights", headers=AUTH)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    assert court.wait(lambda: len(court.event_payloads("/highlight/created")) == 3, 15), court.event_payloads(
        "/highlight/")
    clips = {c["clip_id"]: c for c in court.event_payloads("/highlight/clip")}
    assert sorted(c["presses"] for c in clips.values()) == [1, 1, 1]
    assert [c for c in clips.values() if request_id in c["request_ids"]], "the API's request id is not echoed"
    listed = court.api.get("/videos", params={"booking_id": "court1", "kind": "highlight"}, headers=AUTH)
    assert listed.status_code == 200 and len(listed.json()) == 3
    assert {v["kind"] for v in listed.json()} == {"highlight"}
    video, finished = _full_video(court, "court1")
    full_path = court.store.local_object_path("videos", video.storage_path)
    full_frames = _gray_frames(full_path)
    first = datetime.fromisoformat(finished["first_frame_at"])
    assert abs(len(full_frames) - finished["frames"]) <= 1, "the full video lost or gained frames"
    assert finished["frames"] >= 9 * FPS - 3, "the recording lost frames"
    for created in court.event_payloads("/highlight/created"):
        clip = clips[created["clip_id"]]
        highlight = court.store.get_video(created["video_id"])
        assert highlight.kind == "highlight" and highlight.booking_id == "court1" and highlight.user_id == "player1"
        times = _check_clip(court, highlight, full_frames, first)
        asked_start = datetime.fromisoformat(clip["start_at"])
        asked_end = datetime.fromisoformat(clip["end_at"])
        assert timedelta(0) <= asked_start - times[0] < timedelta(seconds=1), "not cut on the keyframe before"
        assert timedelta(0) <= asked_end - times[-1] < timedelta(seconds=2 / FPS)
        assert created["copied"] is True  # no logos: the recording's own packets
        assert (asked_end - asked_start) == timedelta(seconds=3)
        # shareable with the existing share links, and with a thumbnail
        share = court.api.post(f"/videos/{highlight.id}/share", headers=AUTH, json={})
        assert share.status_code in (200, 201), share.text
        assert court.api.get(share.json()["url"] + "/video").status_code == 200
        thumb = court.api.get(f"/videos/{highlight.id}/thumbnail", headers=AUTH)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_twenty_presses_leave_the_full_video_intact(court: Court):
    start = court.book("court20", in_s=1, seconds=9)
    assert court.wait(lambda: court.recorder.recording_now == "court20", 10)
    for n in range(20):  # every 0.3 s from 1.5 s: each press after the last clip's end (0.2 s) makes a clip
        sleep_until(start + timedelta(seconds=1.5 + 0.3 * n))
        court.publish({"seconds": 1, "after_s": 0.2, "request_id": f"p{n}"})
    video, finished = _full_video(court, "court20")
    made = lambda: {c["clip_id"] for c in court.event_payloads("/highlight/created")}  # noqa: E731
    asked = lambda: {c["clip_id"] for c in court.event_payloads("/highlight/clip")}  # noqa: E731
    assert court.wait(lambda: made() == asked(), 30), (asked() - made(), court.event_payloads("/highlight/failed"))
    clips: dict[str, dict] = {}
    for clip in court.event_payloads("/highlight/clip"):
        clips[clip["clip_id"]] = clip  # the last copy of each is the one the extensions made
    assert sum(c["presses"] for c in clips.values()) == 20
    assert sorted(r for c in clips.values() for r in c["request_ids"]) == sorted(f"p{n}" for n in range(20))
    assert len(clips) >= 10  # presses 0.3 s apart; a few may merge if two arrive within 0.2 s
    assert court.event_payloads("/highlight/failed") == []
    assert len(court.store.list_videos(booking_id="court20", kind="highlight")) == len(clips)
    # The booking's own recording and video: every frame, on time, whatever was pressed.
    full_frames = _gray_frames(court.store.local_object_path("videos", video.storage_path))
    assert abs(len(full_frames) - finished["frames"]) <= 1
    assert finished["frames"] >= 9 * FPS - 3
    first = datetime.fromisoformat(finished["first_frame_at"])
    assert abs((first - start).total_seconds()) < 0.2
    assert court.store.get_booking("court20").status == "video_uploaded"
    for video_row in court.store.list_videos(booking_id="court20", kind="highlight")[:5]:
        _check_clip(court, video_row, full_frames, first)


def test_presses_outside_a_recording_are_refused_with_a_reason(court: Court, listen):
    dead = listen("ezrec/deadletter")
    court.publish(b"{}")
    court.events.wait_for(lambda t, p: t.endswith("/highlight/refused"), 10)
    [refused] = court.event_payloads("/highlight/refused")
    assert refused["code"] == "not_recording" and "no recording" in refused["reason"]
    court.press_button()
    assert court.wait(lambda: len(court.event_payloads("/highlight/refused")) == 2, 10)
    assert court.event_payloads("/highlight/refused")[1]["source"] == "button"
    court.publish(b'{"seconds": "lots"}')  # junk is dead-lettered, never a crash
    _, letter = dead.wait_for(lambda t, p: b"HighlightRequest" in p, 10)
    assert "seconds" in json.loads(letter)["error"]
    court.publish(b"{}", retain=True)  # a retained press would fire on every reconnect: ignored
    court.publish(b"", retain=True)  # (and cleared)
    # The API answers at once: unknown booking 404, a booking not under way 409 with the reason.
    assert court.api.post("/bookings/nope/highlights", headers=AUTH).status_code == 404
    court.book("later", in_s=3600, seconds=60)
    answer = court.api.post("/bookings/later/highlights", headers=AUTH, json={"seconds": 10})
    assert answer.status_code == 409 and "not being recorded now" in answer.json()["detail"]
    assert court.api.post("/bookings/later/highlights", headers=AUTH, json={"seconds": 0}).status_code == 422
    assert court.api.post("/bookings/later/highlights").status_code == 401
    assert court.wait(lambda: court.recorder.recording_now is None, 1)
    assert len(court.event_payloads("/highlight/refused")) == 2
    assert court.event_payloads("/highlight/clip") == []
    assert court.event_payloads("/highlight/created") == []
