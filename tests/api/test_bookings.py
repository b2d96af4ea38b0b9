"""Bookings through the API: validation, idempotency, changes by phase, and the schedule after each change."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from services.api.booking_rules import Phase, RuleViolation, cancel_action, check_change, phase
from shared.models import Booking, BookingIn, BookingStatus
from shared.schedule_cache import read_cache
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.api.conftest import AUTH, booking_body


def _snapshot_ids(payload: bytes) -> dict[str, dict]:
    return {b["id"]: b for b in json.loads(payload)["bookings"]}


def test_health_is_open_everything_else_needs_the_token(client):
    assert client.get("/health").status_code == 200
    for method, path in [("GET", "/bookings"), ("POST", "/bookings"), ("GET", "/bookings/b1"),
                         ("PUT", "/bookings/b1"), ("DELETE", "/bookings/b1"), ("GET", "/videos"),
                         ("GET", "/status"), ("GET", "/users/u1/settings"), ("POST", "/media/notify")]:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/bookings", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/bookings", params={"token": "test-token-0123456789"}).status_code == 401  # header only
    assert client.get("/videos", headers=AUTH).status_code == 200


def test_refuses_to_start_without_a_token(make_settings):
    from services.api.main import create_app

    with pytest.raises(ValueError, match="API_TOKEN"):
        create_app(make_settings(api_token=None))


def test_create_is_idempotent_and_publishes_the_schedule(client, settings, listen):
    schedule = listen(f"ezrec/{settings.camera_id}/bookings")
    body = booking_body()
    first = client.post("/bookings", json=body, headers=AUTH)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "confirmed" and first.json()["camera_id"] == settings.camera_id
    again = client.post("/bookings", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json() == first.json()
    changed = client.post("/bookings", json={**body, "user_id": "u2"}, headers=AUTH)
    assert changed.status_code == 409 and changed.json()["detail"]["conflicting_id"] == "b1"
    overlap = client.post("/bookings", json=booking_body("b2", start_in_s=3700), headers=AUTH)
    assert overlap.status_code == 409 and "overlaps booking b1" in overlap.json()["detail"]["message"]
    assert overlap.json()["detail"]["conflicting_id"] == "b1"

    _, payload = schedule.wait_for(lambda t, p: "b1" in _snapshot_ids(p))
    assert json.loads(payload)["v"] == 1
    late = listen(f"ezrec/{settings.camera_id}/bookings")  # a subscriber that comes later gets it retained
    late.wait_for(lambda t, p: "b1" in _snapshot_ids(p))
    assert any(retained and "b1" in _snapshot_ids(p) for _, p, retained in late.messages)
    cache = read_cache(settings.bookings_cache_path)
    assert [b.id for b in cache.bookings] == ["b1"]


def test_same_instant_in_another_offset_is_the_same_booking(client):
    body = booking_body()
    assert client.post("/bookings", json=body, headers=AUTH).status_code == 201
    plus2 = timezone(timedelta(hours=2))
    start, end = (datetime.fromisoformat(body[k]).astimezone(plus2).isoformat() for k in ("start_time", "end_time"))
    assert "+02:00" in start
    same = client.post("/bookings", json={**body, "start_time": start, "end_time": end}, headers=AUTH)
    assert same.status_code == 200


def test_list_of_bookings_and_filters(client, settings):
    r = client.post("/bookings", json=[booking_body("a", 3600), booking_body("b", 7200, user_id="u2")], headers=AUTH)
    assert r.status_code == 201 and [b["id"] for b in r.json()] == ["a", "b"]
    assert [b["id"] for b in client.get("/bookings", headers=AUTH).json()] == ["a", "b"]
    to = isoformat_z(utc_now() + timedelta(seconds=5000))
    assert [b["id"] for b in client.get("/bookings", params={"to": to}, headers=AUTH).json()] == ["a"]
    since = isoformat_z(utc_now() + timedelta(seconds=5000))
    assert [b["id"] for b in client.get("/bookings", params={"from": since}, headers=AUTH).json()] == ["b"]
    assert [b["id"] for b in client.get("/bookings", params={"user_id": "u2"}, headers=AUTH).json()] == ["b"]
    assert [b["id"] for b in client.get("/bookings", params={"camera_id": settings.camera_id},
                                        headers=AUTH).json()] == ["a", "b"]
    assert client.get("/bookings", params={"camera_id": "elsewhere"}, headers=AUTH).json() == []
    assert client.get("/bookings", params={"status": "completed"}, headers=AUTH).json() == []
    assert client.get("/bookings", params={"status": "nonsense"}, headers=AUTH).status_code == 422
    assert client.get("/bookings", params={"from": "2026-01-01T00:00:00"}, headers=AUTH).status_code == 422
    assert client.get("/bookings/b", headers=AUTH).json()["id"] == "b"
    assert client.get("/bookings/zzz", headers=AUTH).status_code == 404
    assert client.get("/bookings/bad%20id", headers=AUTH).status_code == 422


def test_a_list_is_all_or_nothing(client):
    assert client.post("/bookings", json=booking_body("x", 3600), headers=AUTH).status_code == 201
    r = client.post("/bookings", json=[booking_body("y", 20000), booking_body("z", 3700)], headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"]["conflicting_id"] == "x"
    assert client.get("/bookings/y", headers=AUTH).status_code == 404
    dup = client.post("/bookings", json=[booking_body("w", 20000), booking_body("w", 30000)], headers=AUTH)
    assert dup.status_code == 422 and "twice" in dup.text
    assert client.post("/bookings", json=[], headers=AUTH).status_code == 422


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"start_time": "2030-01-01T10:00:00"}, "timezone"),
        ({"end_time": "2030-01-01T10:00:00"}, "timezone"),
        ({"start_time": "tomorrow"}, "datetime"),
        ({"id": "../etc"}, "pattern"),
        ({"id": "x" * 65}, "pattern"),
        ({"user_id": "a/b"}, "pattern"),
        ({"end_time": "2000-01-01T00:00:00Z"}, "end_time must be after start_time"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_bookings_get_422_with_a_reason(client, change, reason):
    r = client.post("/bookings", json={**booking_body(), **change}, headers=AUTH)
    assert r.status_code == 422 and reason in r.text, r.text
    assert isinstance(r.json()["detail"], list) and "loc" in r.json()["detail"][0]


def _locs(response) -> list[list]:
    return [e["loc"] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (1900000000, "a bare number (unix time) is not ISO 8601"),
        ("1900000000", "nor is one in a string"),
        (1900000000.5, "nor a float"),
        (True, "nor a boolean"),
        ("2030-01-01", "a date alone has no time and no offset"),
        ("2030-01-01T10:00:00", "no offset"),
        ("Wed, 01 Jan 2030 10:00:00 GMT", "an HTTP date is not ISO 8601"),
        ("9999-01-01T10:00:00Z", "year 9999 is outside the sane window"),
        ("1970-01-01T00:00:00Z", "so is 1970"),
        ("2100-01-01T00:00:00Z", "the window ends before 2100"),
    ],
)
def test_times_are_iso_8601_with_an_offset_in_a_sane_window_and_errors_name_the_field(client, value, why):
    """The README promises ISO 8601 with an offset; a bare number once passed as unix time and year 9999 was
    booked. A 422 points at the field (`["body", "start_time"]`), not at pydantic's union member."""
    single = client.post("/bookings", json={**booking_body("t1"), "start_time": value}, headers=AUTH)
    assert single.status_code == 422, (why, single.text)
    assert _locs(single) == [["body", "start_time"]], why
    batch = client.post("/bookings", json=[booking_body("t0", 30000), {**booking_body("t2"), "end_time": value}],
                        headers=AUTH)
    assert batch.status_code == 422 and _locs(batch) == [["body", 1, "end_time"]], (why, batch.text)
    client.post("/bookings", json=booking_body("t3"), headers=AUTH)
    moved = client.put("/bookings/t3", json={"start_time": value, "end_time": booking_body()["end_time"]},
                       headers=AUTH)
    assert moved.status_code == 422 and _locs(moved) == [["body", "start_time"]], (why, moved.text)
    query = client.get("/bookings", params={"from": str(value)}, headers=AUTH)
    assert query.status_code == 422 and _locs(query) == [["query", "from"]], (why, query.text)
    since = client.get("/status/history", params={"since": str(value)}, headers=AUTH)
    assert since.status_code == 422 and _locs(since) == [["query", "since"]], (why, since.text)


def test_end_before_start_is_reported_on_end_time(client):
    body = booking_body("e1")
    body["start_time"], body["end_time"] = body["end_time"], body["start_time"]
    single = client.post("/bookings", json=body, headers=AUTH)
    assert single.status_code == 422 and _locs(single) == [["body", "end_time"]], single.text
    assert "end_time must be after start_time" in single.text
    batch = client.post("/bookings", json=[booking_body("e0", 30000), body], headers=AUTH)
    assert _locs(batch) == [["body", 1, "end_time"]], batch.text
    assert _locs(client.post("/bookings", json=7, headers=AUTH)) == [["body"]]
    accepted = {"2030-01-01T10:00:00Z": "2030-01-01T10:00:00Z", "2030-01-01T11:00:00+01:00": "2030-01-01T10:00:00Z",
                "2030-01-01T05:00-05:00": "2030-01-01T10:00:00Z", "2030-01-01T10:00:00+0000": "2030-01-01T10:00:00Z",
                "2030-01-01T10:00:00.250Z": "2030-01-01T10:00:00.250000Z"}
    for i, (good, stored) in enumerate(accepted.items()):
        r = client.post("/bookings", json={"id": f"g{i}", "user_id": "u1", "start_time": good,
                                           "end_time": "2030-01-01T10:30:00Z"}, headers=AUTH)
        assert r.status_code == 201 and r.json()["start_time"] == stored, (good, r.text)
        assert client.delete(f"/bookings/g{i}", headers=AUTH).status_code == 204


def test_too_long_and_past_bookings_are_refused(client, settings):
    r = client.post("/bookings", json=booking_body(seconds=(settings.max_booking_minutes + 1) * 60), headers=AUTH)
    assert r.status_code == 422 and "MAX_BOOKING_MINUTES" in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "end_time"]
    r = client.post("/bookings", json=[booking_body(start_in_s=-7200, seconds=60)], headers=AUTH)
    assert r.status_code == 422 and "ends in the past" in r.text
    assert r.json()["detail"][0]["loc"] == ["body", 0, "end_time"]
    exactly = client.post("/bookings", json=booking_body(seconds=settings.max_booking_minutes * 60), headers=AUTH)
    assert exactly.status_code == 201



def _seed(settings, booking_id: str, start: datetime, end: datetime,
          status: BookingStatus | None = None) -> Booking:
    """Store a booking as an earlier POST would have (the store does not judge times), for retries of it."""
    store = LocalStore(settings.data_dir)
    try:
        [(booking, created)] = store.create_bookings(
            [BookingIn(id=booking_id, user_id="u1", start_time=start, end_time=end)], settings.camera_id)
        assert created
        if status is not None:
            booking = store.advance_booking_status(booking_id, status)
        return booking
    finally:
        store.close()


def _as_sent(booking: Booking, **change: object) -> dict:
    return {"id": booking.id, "user_id": booking.user_id, "start_time": isoformat_z(booking.start_time),
            "end_time": isoformat_z(booking.end_time), **change}


def test_an_identical_resend_is_200_even_after_the_booking_ended(client, settings):
    """A client retrying its POST after a timeout must not get a 422 because the booking has ended since."""
    now = utc_now()
    # Ended moments ago, as for a retry after a timeout: inside BOOKING_MISSED_AFTER_S, so the missed
    # sweep running beside the test leaves it confirmed (a booking an hour past would turn `missed`).
    past = _seed(settings, "past", now - timedelta(hours=1), now - timedelta(seconds=30))
    done = _seed(settings, "done", now - timedelta(hours=4), now - timedelta(hours=3), BookingStatus.video_uploaded)

    again = client.post("/bookings", json=_as_sent(past), headers=AUTH)
    assert again.status_code == 200, again.text
    assert again.json() == client.get("/bookings/past", headers=AUTH).json()
    recorded = client.post("/bookings", json=_as_sent(done), headers=AUTH)
    assert recorded.status_code == 200 and recorded.json()["status"] == "video_uploaded", recorded.text

    for change in ({"user_id": "u2"}, {"end_time": isoformat_z(past.end_time - timedelta(minutes=5))}):
        changed = client.post("/bookings", json=_as_sent(past, **change), headers=AUTH)
        assert changed.status_code == 409, (change, changed.text)
        assert changed.json()["detail"]["conflicting_id"] == "past"
        assert "different details" in changed.json()["detail"]["message"]
    fresh = client.post("/bookings", json=_as_sent(past, id="fresh"), headers=AUTH)  # a new id: every rule
    assert fresh.status_code == 422 and "ends in the past" in fresh.text
    assert client.get("/bookings/past", headers=AUTH).json() == again.json()


def test_an_identical_list_resend_is_200_even_after_the_booking_ended(client, settings):
    now = utc_now()
    # Ended moments ago, as for a retry after a timeout: inside BOOKING_MISSED_AFTER_S, so the missed
    # sweep running beside the test leaves it confirmed (a booking an hour past would turn `missed`).
    past = _seed(settings, "past", now - timedelta(hours=1), now - timedelta(seconds=30))
    stored = client.get("/bookings/past", headers=AUTH).json()

    again = client.post("/bookings", json=[_as_sent(past)], headers=AUTH)
    assert again.status_code == 200 and again.json() == [stored], again.text
    mixed = client.post("/bookings", json=[_as_sent(past), booking_body("next", 3600)], headers=AUTH)
    assert mixed.status_code == 201, mixed.text
    assert [b["id"] for b in mixed.json()] == ["past", "next"] and mixed.json()[0] == stored

    late = client.post("/bookings", json=[_as_sent(past), _as_sent(past, id="late")], headers=AUTH)
    assert late.status_code == 422 and "ends in the past" in late.text
    assert late.json()["detail"][0]["loc"] == ["body", 1, "end_time"]
    changed = client.post("/bookings", json=[_as_sent(past, user_id="u2"), booking_body("other", 20000)],
                          headers=AUTH)
    assert changed.status_code == 409 and changed.json()["detail"]["conflicting_id"] == "past"
    twice = client.post("/bookings", json=[_as_sent(past), _as_sent(past)], headers=AUTH)
    assert twice.status_code == 422 and "twice" in twice.text
    for absent in ("late", "other"):  # all or nothing
        assert client.get(f"/bookings/{absent}", headers=AUTH).status_code == 404


def test_an_identical_resend_is_200_when_the_length_limit_has_shrunk_since(client, settings):
    start = utc_now() + timedelta(hours=1)
    long = _seed(settings, "long", start, start + timedelta(minutes=settings.max_booking_minutes + 30))
    again = client.post("/bookings", json=_as_sent(long), headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == "long", again.text
    later = start + timedelta(days=1)
    new = client.post("/bookings", json=_as_sent(long, id="long2", start_time=isoformat_z(later),
                                                 end_time=isoformat_z(later + (long.end_time - long.start_time))),
                      headers=AUTH)
    assert new.status_code == 422 and "MAX_BOOKING_MINUTES" in new.text

# ---- PUT -------------------------------------------------------------------------------------------


def test_put_moves_an_upcoming_booking_and_republishes(client, settings, listen):
    schedule = listen(f"ezrec/{settings.camera_id}/bookings")
    client.post("/bookings", json=[booking_body("a", 3600), booking_body("b", 7200)], headers=AUTH)
    later = booking_body("a", 10000, seconds=900)
    r = client.put("/bookings/a", json={"start_time": later["start_time"], "end_time": later["end_time"]},
                   headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["start_time"] == later["start_time"] and r.json()["end_time"] == later["end_time"]
    _, payload = schedule.wait_for(lambda t, p: _snapshot_ids(p).get("a", {}).get("end_time") == later["end_time"])
    assert set(_snapshot_ids(payload)) == {"a", "b"}
    assert read_cache(settings.bookings_cache_path).model_dump(mode="json")["bookings"][1]["end_time"] == \
        later["end_time"]

    # Overlap names the other booking; moving within its own old slot does not clash with itself.
    onto_b = booking_body("a", 7000, seconds=600)
    clash = client.put("/bookings/a", json={k: onto_b[k] for k in ("start_time", "end_time")}, headers=AUTH)
    assert clash.status_code == 409 and clash.json()["detail"]["conflicting_id"] == "b"
    assert "overlap booking b" in clash.json()["detail"]["message"]
    itself = booking_body("a", 10100, seconds=600)
    assert client.put("/bookings/a", json={k: itself[k] for k in ("start_time", "end_time")},
                      headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"start_time": "2030-01-01T10:00:00", "end_time": "2030-01-01T11:00:00Z"}, 422, "timezone"),
        ({"start_time": "2030-01-01T11:00:00Z", "end_time": "2030-01-01T10:00:00Z"}, 422, "after start_time"),
        ({"start_time": "2030-01-01T10:00:00Z", "end_time": "2030-01-02T10:00:00Z"}, 422, "MAX_BOOKING_MINUTES"),
        ({"start_time": "2020-01-01T10:00:00Z", "end_time": "2020-01-01T11:00:00Z"}, 422, "ends in the past"),
        ({"start_time": "2030-01-01T10:00:00Z"}, 422, "Field required"),
        ({"start_time": "2030-01-01T10:00:00Z", "end_time": "2030-01-01T11:00:00Z", "id": "x"}, 422, "Extra"),
    ],
)
def test_put_validates_like_create(client, body, status, reason):
    client.post("/bookings", json=booking_body("a"), headers=AUTH)
    r = client.put("/bookings/a", json=body, headers=AUTH)
    assert r.status_code == status and reason in r.text, r.text
    assert client.put("/bookings/nope", json={"start_time": "2030-01-01T10:00:00Z",
                                              "end_time": "2030-01-01T11:00:00Z"}, headers=AUTH).status_code == 404


def test_in_progress_booking_may_only_move_its_end(client, settings):
    start = utc_now() - timedelta(seconds=60)
    client.post("/bookings", json={"id": "live", "user_id": "u1", "start_time": isoformat_z(start),
                                   "end_time": isoformat_z(start + timedelta(minutes=10))}, headers=AUTH)
    later_end = isoformat_z(start + timedelta(minutes=30))
    moved = client.put("/bookings/live", json={"start_time": isoformat_z(start + timedelta(seconds=30)),
                                               "end_time": later_end}, headers=AUTH)
    assert moved.status_code == 409 and "only its end_time" in moved.json()["detail"]["message"]
    assert moved.json()["detail"]["conflicting_id"] == "live"
    past = client.put("/bookings/live", json={"start_time": isoformat_z(start),
                                              "end_time": isoformat_z(utc_now() - timedelta(seconds=1))}, headers=AUTH)
    assert past.status_code == 422 and "ends in the past" in past.text
    extended = client.put("/bookings/live", json={"start_time": isoformat_z(start), "end_time": later_end},
                          headers=AUTH)
    assert extended.status_code == 200 and extended.json()["end_time"] == later_end
    cached = {b.id: b for b in read_cache(settings.bookings_cache_path).bookings}
    assert isoformat_z(cached["live"].end_time) == later_end  # what the recorder reads


def test_recorded_bookings_cannot_change_or_be_deleted(client, settings):
    client.post("/bookings", json=booking_body("done"), headers=AUTH)
    store = LocalStore(settings.data_dir)
    store.advance_booking_status("done", BookingStatus.video_uploaded)
    body = booking_body("done", 20000)
    r = client.put("/bookings/done", json={k: body[k] for k in ("start_time", "end_time")}, headers=AUTH)
    assert r.status_code == 409 and "video_uploaded" in r.json()["detail"]["message"]
    r = client.delete("/bookings/done", headers=AUTH)
    assert r.status_code == 409 and "kept" in r.json()["detail"]["message"]
    assert client.get("/bookings/done", headers=AUTH).json()["status"] == "video_uploaded"


# ---- DELETE ----------------------------------------------------------------------------------------


def test_delete_before_start_removes_and_republishes(client, settings, listen):
    schedule = listen(f"ezrec/{settings.camera_id}/bookings")
    client.post("/bookings", json=[booking_body("later"), booking_body("other", 9000)], headers=AUTH)
    schedule.wait_for(lambda t, p: "later" in _snapshot_ids(p))
    assert client.delete("/bookings/later", headers=AUTH).status_code == 204
    assert client.get("/bookings/later", headers=AUTH).status_code == 404
    _, payload = schedule.wait_for(lambda t, p: "later" not in _snapshot_ids(p) and "other" in _snapshot_ids(p))
    assert set(_snapshot_ids(payload)) == {"other"}
    assert [b.id for b in read_cache(settings.bookings_cache_path).bookings] == ["other"]
    assert client.delete("/bookings/later", headers=AUTH).status_code == 404


def test_delete_in_progress_ends_it_now_and_keeps_it(client, settings, listen):
    schedule = listen(f"ezrec/{settings.camera_id}/bookings")
    start = utc_now() - timedelta(seconds=30)
    client.post("/bookings", json={"id": "live", "user_id": "u1", "start_time": isoformat_z(start),
                                   "end_time": isoformat_z(start + timedelta(minutes=10))}, headers=AUTH)
    before = utc_now()
    r = client.delete("/bookings/live", headers=AUTH)
    assert r.status_code == 200, r.text
    ended = Booking.model_validate(r.json())
    assert ended.status == BookingStatus.confirmed and ended.start_time == start
    assert before <= ended.end_time <= utc_now()
    # The recorder's view: the booking is over now, so it stops and finalises what it has.
    schedule.wait_for(lambda t, p: _snapshot_ids(p).get("live", {}).get("end_time") == isoformat_z(ended.end_time))
    assert client.get("/bookings/live", headers=AUTH).json()["end_time"] == isoformat_z(ended.end_time)
    # Now it has ended: neither change nor cancel again.
    assert client.delete("/bookings/live", headers=AUTH).status_code == 409


def test_phase_rules():
    now = utc_now()
    b = Booking(id="b", user_id="u", camera_id="c", start_time=now + timedelta(minutes=1),
                end_time=now + timedelta(minutes=11))
    assert phase(b, now) == Phase.upcoming
    assert phase(b, now + timedelta(minutes=5)) == Phase.in_progress
    assert phase(b, now + timedelta(minutes=11)) == Phase.ended  # end is exclusive
    assert phase(b.model_copy(update={"status": BookingStatus.completed}), now) == Phase.recorded
    assert cancel_action(b, now) == Phase.upcoming
    with pytest.raises(RuleViolation) as exc:
        cancel_action(b, now + timedelta(minutes=12))
    assert exc.value.status == 409
    with pytest.raises(RuleViolation) as exc:
        check_change(b, b.start_time, b.end_time + timedelta(minutes=1), now + timedelta(minutes=12), 240)
    assert exc.value.status == 409 and "ended" in exc.value.message
    check_change(b, b.start_time, b.end_time + timedelta(minutes=5), now + timedelta(minutes=5), 240)


def test_the_list_follows_writes_from_other_processes(client, settings):
    """GET /bookings reuses its serialized answer only while the database is unchanged (bench/api_load.py)."""
    import subprocess
    import sys

    client.post("/bookings", json=[booking_body("a", 3600), booking_body("b", 7200)], headers=AUTH)
    first = client.get("/bookings", headers=AUTH).json()
    assert [b["status"] for b in first] == ["confirmed", "confirmed"]
    assert client.get("/bookings", headers=AUTH).json() == first
    # The recorder and the worker advance statuses from their own processes.
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from shared.store import LocalStore; "
                    "from shared.models import BookingStatus; "
                    "LocalStore(Path(sys.argv[1])).advance_booking_status('a', BookingStatus.completed)",
                    str(settings.data_dir)], check=True, timeout=60)
    assert [b["status"] for b in client.get("/bookings", headers=AUTH).json()] == ["completed", "confirmed"]
    # Another connection in this process (another thread's) and the API's own writes.
    LocalStore(settings.data_dir).advance_booking_status("b", BookingStatus.video_uploaded)
    assert [b["status"] for b in client.get("/bookings", headers=AUTH).json()] == ["completed", "video_uploaded"]
    assert client.post("/bookings", json=booking_body("c", 20000), headers=AUTH).status_code == 201
    assert [b["id"] for b in client.get("/bookings", headers=AUTH).json()] == ["a", "b", "c"]
    assert [b["id"] for b in client.get("/bookings", params={"status": "completed"}, headers=AUTH).json()] == ["a"]
