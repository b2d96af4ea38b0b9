"""Alert evaluation: raised once, cleared once, no flapping, and a restart neither re-raises nor forgets."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.status.alerts import AlertBook, Thresholds, checks, evaluate, load_book, save_book
from shared.payloads import Alert, BookingRef, StatusSnapshot
from shared.timeutil import utc_now

T = Thresholds(disk_free_gb=5.0, temperature_c=80.0, next_booking_minutes=30, hold_s=90)
ONLINE = {"api": "online", "recorder": "online", "worker": "online", "status": "online"}


def snap(at: datetime, **overrides: object) -> StatusSnapshot:
    values: dict[str, object] = dict(
        camera_id="c", collected_at=at, cpu_percent=5, load_1m=0.1, memory_percent=30, memory_used_mb=500,
        disk_total_gb=64, disk_free_gb=40, uptime_s=100, cpu_temperature_c=50.0, services=dict(ONLINE))
    values.update(overrides)
    return StatusSnapshot(**values)  # type: ignore[arg-type]


class Run:
    """Feeds snapshots through checks + evaluate, as the service does, and keeps every event."""

    def __init__(self, book: AlertBook | None = None) -> None:
        self.book = book or AlertBook()
        self.events: list[Alert] = []

    def feed(self, s: StatusSnapshot) -> list[Alert]:
        self.book, events = evaluate(checks(s, T, set(self.book.raised())), self.book, s.collected_at, "c")
        self.events += events
        return events

    def pairs(self) -> list[tuple[str, str]]:
        return [(e.id, e.state) for e in self.events]


def test_all_quiet_produces_nothing():
    run = Run()
    t0 = utc_now()
    for i in range(5):
        run.feed(snap(t0 + timedelta(minutes=i)))
    assert run.events == [] and run.book.raised() == []


def test_disk_low_raises_once_and_clears_once_past_the_margin():
    run, t0 = Run(), utc_now()
    # Hovering around the threshold: 4.9 / 5.1 / 4.8 / 5.3 ... must not toggle.
    frees = [6.0, 4.9, 5.1, 4.8, 5.3, 5.9, 4.95, 6.1, 6.5, 5.5, 4.0]
    for i, free in enumerate(frees):
        run.feed(snap(t0 + timedelta(minutes=i), disk_free_gb=free))
    assert run.pairs() == [("disk_low", "raised"), ("disk_low", "cleared"), ("disk_low", "raised")]
    raised = run.events[0]
    assert raised.kind == "disk_low" and raised.value == 4.9 and raised.threshold == 5.0 and raised.camera_id == "c"
    assert raised.at == t0 + timedelta(minutes=1) and "4.9 GB free" in raised.message
    assert run.events[1].value == 6.1  # cleared only at threshold + max(1 GB, 10 %)


def test_temperature_high_with_hysteresis_and_absent_reading():
    run, t0 = Run(), utc_now()
    temps = [79.0, 81.0, 79.5, None, 82.0, 76.0, 74.9, 80.5]
    for i, temp in enumerate(temps):
        run.feed(snap(t0 + timedelta(minutes=i), cpu_temperature_c=temp))
    assert run.pairs() == [("temperature_high", "raised"), ("temperature_high", "cleared"),
                           ("temperature_high", "raised")]
    assert [e.value for e in run.events] == [81.0, 74.9, 80.5]


def test_service_offline_needs_the_hold_time_both_ways():
    run, t0 = Run(), utc_now()

    def at(seconds: float, recorder: str) -> list[Alert]:
        return run.feed(snap(t0 + timedelta(seconds=seconds), services={**ONLINE, "recorder": recorder}))

    # A restart (offline for 30 s) is not an alert.
    assert at(0, "offline") == [] and at(30, "online") == [] and at(60, "online") == []
    # Offline for longer than the hold: raised once.
    assert at(100, "offline") == [] and at(160, "offline") == []
    raised = at(200, "offline")
    assert [(e.id, e.state, e.value) for e in raised] == [("service_offline:recorder", "raised", "offline")]
    assert at(260, "offline") == []
    # Back for a moment, then offline again: still the same alert, nothing sent.
    assert at(300, "online") == [] and at(330, "offline") == [] and at(360, "online") == []
    assert at(400, "online") == []
    cleared = at(460, "online")
    assert [(e.id, e.state) for e in cleared] == [("service_offline:recorder", "cleared")]
    assert run.pairs() == [("service_offline:recorder", "raised"), ("service_offline:recorder", "cleared")]


def test_unknown_availability_is_not_an_outage_and_the_status_service_is_not_watched():
    run, t0 = Run(), utc_now()
    for i in range(5):
        run.feed(snap(t0 + timedelta(minutes=i), services={"api": "unknown", "recorder": "online",
                                                            "worker": "online", "status": "offline"}))
    assert run.events == []


def test_camera_fault_raises_at_once_and_clears_after_the_hold():
    run, t0 = Run(), utc_now()
    assert [e.state for e in run.feed(snap(t0, camera_fault="camera disconnected"))] == ["raised"]
    assert run.events[0].value == "camera disconnected"
    assert run.feed(snap(t0 + timedelta(seconds=60))) == []
    assert run.feed(snap(t0 + timedelta(seconds=100), camera_fault="again")) == []  # flaps back: no event
    assert run.feed(snap(t0 + timedelta(seconds=160))) == []
    assert [e.state for e in run.feed(snap(t0 + timedelta(seconds=260)))] == ["cleared"]


def test_booking_at_risk_when_the_recorder_is_offline_before_a_booking():
    run, t0 = Run(), utc_now()
    offline = {**ONLINE, "recorder": "offline"}

    def booking(start_min: float) -> BookingRef:
        start = t0 + timedelta(minutes=start_min)
        return BookingRef(id="b1", user_id="u1", start_time=start, end_time=start + timedelta(minutes=60))

    # Far away: no risk yet, even with the recorder down (service_offline covers that).
    run.feed(snap(t0, services=offline, next_booking=booking(120)))
    run.feed(snap(t0 + timedelta(minutes=2), services=offline, next_booking=booking(120)))
    assert [e.id for e in run.events] == ["service_offline:recorder"]
    run.feed(snap(t0 + timedelta(minutes=3), services=offline, next_booking=booking(25)))
    run.feed(snap(t0 + timedelta(minutes=5), services=offline, next_booking=booking(25)))
    risk = [e for e in run.events if e.id == "booking_at_risk"]
    assert [(e.state, e.threshold) for e in risk] == [("raised", 30)]
    assert risk[0].value == 20.0 and "booking b1 starts in 20 min" in risk[0].message
    # The booking starts and the recorder is still down: still the same alert.
    run.feed(snap(t0 + timedelta(minutes=30), services=offline, current_booking=booking(25)))
    # Recorder back: cleared after the hold, once.
    run.feed(snap(t0 + timedelta(minutes=31), current_booking=booking(25)))
    run.feed(snap(t0 + timedelta(minutes=33), current_booking=booking(25)))
    run.feed(snap(t0 + timedelta(minutes=35), current_booking=booking(25)))
    risk = [(e.id, e.state) for e in run.events if e.id == "booking_at_risk"]
    assert risk == [("booking_at_risk", "raised"), ("booking_at_risk", "cleared")]


def test_a_restart_neither_re_raises_nor_forgets(tmp_path):
    path = tmp_path / "state" / "status-alerts.json"
    run, t0 = Run(), utc_now()
    run.feed(snap(t0, disk_free_gb=1.0))
    save_book(path, run.book)
    # Restart: the loaded book knows the alert is raised.
    after = Run(load_book(path))
    after.feed(snap(t0 + timedelta(minutes=1), disk_free_gb=1.0))
    assert after.events == [] and after.book.raised() == ["disk_low"]
    after.feed(snap(t0 + timedelta(minutes=2), disk_free_gb=20.0))
    assert after.pairs() == [("disk_low", "cleared")]
    save_book(path, after.book)
    again = Run(load_book(path))
    again.feed(snap(t0 + timedelta(minutes=3), disk_free_gb=20.0))
    assert again.events == []


def test_a_pending_hold_survives_a_restart(tmp_path):
    path = tmp_path / "alerts.json"
    run, t0 = Run(), utc_now()
    run.feed(snap(t0, services={**ONLINE, "worker": "offline"}))
    save_book(path, run.book)
    after = Run(load_book(path))
    after.feed(snap(t0 + timedelta(seconds=95), services={**ONLINE, "worker": "offline"}))
    assert after.pairs() == [("service_offline:worker", "raised")]


def test_unreadable_alert_state_starts_fresh(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text("[1, 2")
    assert load_book(path) == AlertBook()
    assert load_book(tmp_path / "missing.json") == AlertBook()
