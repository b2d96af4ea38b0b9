"""The dashboard in headless Chromium (Debian's package, driven by Playwright): the token is asked once,
a booking's status moves on the page as the services' events arrive, without a reload."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import expect, sync_playwright

from shared.bus import MqttBus
from shared.models import BookingIn, BookingStatus, SystemStatusRow
from shared.payloads import (
    RecordingFinished,
    RecordingSegment,
    RecordingStarted,
    StatusSnapshot,
    VideoFailed,
    VideoProgress,
    VideoUploaded,
)
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.api.conftest import AUTH, seed_video
from tests.conftest import TOKEN

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_COPY = Path("/tmp/ezrec-dashboard.png")  # for a human look after a run; the test uses tmp_path
ARTEFACTS = Path(os.environ.get("EZREC_SCREENSHOTS", "/tmp/ezrec-screenshots"))
"""Every screenshot is also copied here (the test's tmp_path goes with pytest's rotation), for a human look."""


def keep(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in tmp_path, copied to ARTEFACTS."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTEFACTS / shot.name)
    return shot


@pytest.fixture
def browser_page(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (apt-get install chromium)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1200, "height": 860}, timezone_id="UTC")
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _status_snapshot(camera_id: str) -> StatusSnapshot:
    now = utc_now()
    return StatusSnapshot(camera_id=camera_id, collected_at=now, cpu_percent=23.2, load_1m=0.42, memory_percent=41.0,
                          memory_used_mb=812, disk_total_gb=58.0, disk_free_gb=31.2, uptime_s=3 * 86400 + 7200,
                          cpu_temperature_c=52.3, services={"recorder": "online", "worker": "online"})


def test_dashboard_shows_live_booking_status(live_api, settings, browser_page, tmp_path, camera_id):
    server = live_api()
    store = LocalStore(settings.data_dir)
    seed_video(settings, tmp_path, booking_id="earlier-today", user_id="player7", seconds=2.0)
    snapshot = _status_snapshot(camera_id)
    store.put_system_status(SystemStatusRow(camera_id=camera_id, collected_at=snapshot.collected_at,
                                            snapshot=snapshot.model_dump(mode="json")))
    start = utc_now() - timedelta(seconds=60)  # in progress: on "today" whatever the time of day
    created = httpx.post(f"{server.url}/bookings", headers=AUTH, json={
        "id": "court1-live", "user_id": "player42", "start_time": isoformat_z(start),
        "end_time": isoformat_z(start + timedelta(minutes=30))})
    assert created.status_code == 201, created.text

    page = browser_page
    page.goto(server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    status = page.locator('tr[data-booking-id="court1-live"] .status')
    expect(status).to_have_text("Confirmed", timeout=15_000)
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    # The API's own `online` arrives through /events: the relay is subscribed before anything is published.
    expect(page.locator("#services")).to_contain_text("api: online", timeout=15_000)
    expect(page.locator("#health-list")).to_contain_text("23 %")
    page.evaluate("window.__sameDocument = true")

    bus = MqttBus(settings, "test-services", client_id=f"test-{camera_id}-services",
                  outbox_path=tmp_path / "services-outbox.db")
    bus.start()
    try:
        assert bus.wait_connected(15)
        bus.publish(bus.topics.recording_started, RecordingStarted(
            booking_id="court1-live", camera_id=camera_id, first_frame_at=start))
        expect(status).to_have_text("Recording", timeout=15_000)

        store.advance_booking_status("court1-live", BookingStatus.completed)
        now = utc_now()
        bus.publish(bus.topics.recording_finished, RecordingFinished(
            booking_id="court1-live", camera_id=camera_id, user_id="player42", file="court1-live.mp4",
            first_frame_at=start, last_frame_at=now, frames=900, size_bytes=123456))
        expect(status).to_have_text("Recorded", timeout=15_000)

        video, _ = seed_video(settings, tmp_path, booking_id="court1-live", user_id="player42", seconds=2.0)
        store.advance_booking_status("court1-live", BookingStatus.video_uploaded)
        bus.publish(bus.topics.video_uploaded, VideoUploaded(
            booking_id="court1-live", video_id=video.id, storage_path=video.storage_path,
            size_bytes=video.size_bytes))
        expect(status).to_have_text("Ready", timeout=15_000)
        card = page.locator(f'.video-card[data-video-id="{video.id}"]')
        expect(card).to_be_visible(timeout=15_000)

        bus.publish(bus.topics.status, _status_snapshot(camera_id).model_copy(update={"cpu_percent": 67.0}),
                    retain=True)
        expect(page.locator("#health-list")).to_contain_text("67 %", timeout=15_000)
    finally:
        bus.stop()

    assert page.evaluate("window.__sameDocument") is True  # every change arrived without a reload
    page.wait_for_function("[...document.querySelectorAll('.video-card img')].every(i => i.complete && "
                           "i.naturalWidth === 320)", timeout=15_000)
    card.click()
    expect(page.locator("#player-title")).to_have_text("court1-live (player42)")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_COPY)

    # The token was asked once: a reload goes straight to the data.
    page.reload()
    expect(page.locator('tr[data-booking-id="court1-live"] .status')).to_have_text("Ready", timeout=15_000)
    expect(page.locator("#login")).to_be_hidden()


def test_dashboard_asks_again_when_the_token_is_refused(live_api, browser_page):
    server = live_api()
    page = browser_page
    page.goto(server.url + "/")
    page.fill("#token", "wrong-token")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("The device refused this token.", timeout=15_000)
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('ezrec.token')") is None


def test_share_page_plays_in_chromium(live_api, settings, browser_page, tmp_path):
    server = live_api()
    video, _ = seed_video(settings, tmp_path, booking_id="shared", user_id="player42", seconds=2.0)
    link = httpx.post(f"{server.url}/videos/{video.id}/share", headers=AUTH).json()
    page = browser_page
    assert link["url"].startswith("/share/")  # no PUBLIC_BASE_URL: relative to the API's origin
    page.goto(server.url + link["url"])  # a stranger's browser: no token anywhere
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=15_000)
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(2.0, abs=0.2)
    assert page.evaluate("localStorage.length") == 0
    httpx.delete(f"{server.url}/videos/{video.id}/share", headers=AUTH)
    assert page.goto(server.url + link["url"]).status == 410


VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}


def _layout(page) -> dict:
    """What a person would see as broken: sideways scrolling, a header that stops short, clipped cells."""
    return page.evaluate("""() => {
        const vw = document.documentElement.clientWidth;
        const visible = (e) => e.getClientRects().length > 0;
        const out = (e) => { const r = e.getBoundingClientRect(); return r.left < -0.5 || r.right > vw + 0.5; };
        const clipped = (e) => e.scrollWidth > e.clientWidth + 1;
        return {
            viewport: vw,
            scrollWidth: document.documentElement.scrollWidth,
            bodyWidth: document.body.scrollWidth,
            headerWidth: document.querySelector('header').getBoundingClientRect().width,
            outside: [...document.querySelectorAll('header *, main *, #login *')].filter(visible).filter(out)
                .map((e) => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '')),
            clippedBadges: [...document.querySelectorAll('.status, .note, .badge, .result, .svc, .svc-head, .svc-last,'
                + ' .records li, .op, .op-head, .op dd, .op-actions, summary, #outbox-none, .faults li')]
                .filter(visible).filter(clipped).map((e) => e.tagName + '.' + e.className),
        };
    }""")


def _assert_fits(layout: dict, width: int) -> None:
    assert layout["viewport"] == width, layout
    assert layout["scrollWidth"] <= width and layout["bodyWidth"] <= width, layout  # no sideways scrolling
    assert abs(layout["headerWidth"] - width) < 1, layout  # the header spans the page
    assert layout["outside"] == [] and layout["clippedBadges"] == [], layout


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_dashboard_states_agree_and_fit_the_screen(live_api, settings, browser_page, tmp_path, camera_id, size):
    """During a recording the page once showed "Confirmed · processing 24%" beside "Recording: nothing"; a missed
    slot stayed "Confirmed"; a forged video/failed made a ready video "Ready · encoder failed"; a `null` status
    threw; at 390 px the page was 478 px wide. Checked at 1280x900 and 390x844, screenshots kept in tmp_path."""
    width, height = VIEWPORTS[size]
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    server = live_api(booking_missed_after_s=1.0)
    store = LocalStore(settings.data_dir)
    now = utc_now()
    stale = _status_snapshot(camera_id).model_copy(update={"collected_at": now - timedelta(seconds=50),
                                                           "recording_now": None})
    store.put_system_status(SystemStatusRow(camera_id=camera_id, collected_at=stale.collected_at,
                                            snapshot=stale.model_dump(mode="json")))
    live_start = now - timedelta(seconds=60)
    bookings = [
        {"id": "court1-2026-11-25-1800-live", "user_id": "player-with-a-long-name-42",
         "start_time": isoformat_z(live_start), "end_time": isoformat_z(live_start + timedelta(minutes=30))},
        {"id": "court1-missed", "user_id": "player7", "start_time": isoformat_z(now - timedelta(seconds=130)),
         "end_time": isoformat_z(now - timedelta(seconds=125))},
        {"id": "court1-done", "user_id": "player8", "start_time": isoformat_z(now - timedelta(seconds=120)),
         "end_time": isoformat_z(now - timedelta(seconds=65))},
    ]
    for body in bookings[1:]:  # already over: made as the cloud sync would, without the API's time rules
        store.create_bookings([BookingIn(**body)], camera_id)
    assert httpx.post(f"{server.url}/bookings", headers=AUTH, json=bookings[0]).status_code == 201
    store.advance_booking_status("court1-done", BookingStatus.video_uploaded)
    live_id = bookings[0]["id"]

    login = page.goto(server.url + "/")
    assert login is not None and login.ok
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#live")).to_be_hidden()  # no "offline" pill before anyone has logged in
    keep(page, tmp_path, f"login-{size}")
    _assert_fits(_layout(page), width)
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)

    bus = MqttBus(settings, "test-services", client_id=f"test-{camera_id}-services",
                  outbox_path=tmp_path / "services-outbox.db")
    bus.start()
    try:
        assert bus.wait_connected(15)
        # The page opened after the recording started: it learns it from what arrives next.
        bus.publish_transient(bus.topics.video_progress, VideoProgress(booking_id=live_id, percent=24, fps=30))
        bus.publish(bus.topics.recording_segment, RecordingSegment(
            booking_id=live_id, camera_id=camera_id, index=0, file=f"{live_id}/seg-00000.mp4",
            start_at=live_start, end_at=live_start + timedelta(seconds=10), frames=300))
        row = page.locator(f'tr[data-booking-id="{live_id}"]')
        expect(row.locator(".status")).to_have_text("Recording", timeout=15_000)
        expect(page.locator("#health-list")).to_contain_text(f"Recording{live_id}")
        expect(row.locator(".note")).to_have_text("processing 24%", timeout=15_000)
        keep(page, tmp_path, f"recording-{size}")
        _assert_fits(_layout(page), width)
        # The slot that passed unrecorded: missed, with the reason the API found.
        missed = page.locator('tr[data-booking-id="court1-missed"]')
        expect(missed.locator(".status")).to_have_text("Missed", timeout=15_000)
        expect(missed.locator(".note")).to_contain_text("not_recorded")
        # A forged failure for a video that is ready changes nothing.
        done = page.locator('tr[data-booking-id="court1-done"]')
        expect(done.locator(".status")).to_have_text("Ready")
        bus.publish(bus.topics.video_failed, VideoFailed(booking_id="court1-done", element="encoder",
                                                         reason="forged", final=True))
        bus.publish(bus.topics.video_failed, VideoFailed(booking_id=live_id, element="logo", reason="bad PNG"))
        expect(row.locator(".note")).to_have_text("logo failed, retrying", timeout=15_000)
        expect(done.locator(".note")).to_have_count(0)
        # A `null` status (dropped by the relay; fed to the page directly too) breaks nothing.
        raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        raw.connect("127.0.0.1", settings.mqtt_port)
        raw.loop_start()
        raw.publish(bus.topics.status, b"null", qos=1, retain=True).wait_for_publish(10)
        raw.disconnect()
        raw.loop_stop()
        for payload in ("null", "42", "'text'", "{}", "{services: null, alerts_active: 'x'}"):
            page.evaluate(f"onEvent({{topic: 'ezrec/{camera_id}/status', payload: {payload}}})")
        page.evaluate(f"onEvent(null); onEvent({{topic: 'ezrec/{camera_id}/video/progress', payload: null}})")
        expect(page.locator("#health-list")).to_contain_text("23 %")  # the last real snapshot stays
        bus.publish(bus.topics.recording_finished, RecordingFinished(
            booking_id=live_id, camera_id=camera_id, user_id=bookings[0]["user_id"], file=f"{live_id}.mp4",
            first_frame_at=live_start, last_frame_at=utc_now(), frames=900, size_bytes=123456))
        expect(page.locator("#health-list")).to_contain_text("Recordingnothing", timeout=15_000)
        expect(row.locator(".status")).not_to_have_text("Recording", timeout=15_000)
    finally:
        bus.stop()
    # The operator's panels on a device without Supabase: every service listed, no cloud outbox, said plainly.
    expect(page.locator("#device-list .svc")).to_have_count(4)
    expect(page.locator("#outbox-none")).to_contain_text("no cloud outbox: SUPABASE_URL is not set")
    expect(page.locator("#outbox-list .op")).to_have_count(0)
    keep(page, tmp_path, f"dashboard-{size}")
    _assert_fits(_layout(page), width)
    assert errors == []


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_services_panel_restarts_a_service_and_asks_for_a_snapshot(
        live_api, make_settings, browser_page, tmp_path, camera_id, size):
    """The worker and the status service run in this process as they do in theirs (their runtime attached to a real
    bus, the real status loop): the panel shows their recent warnings, Restart (after the confirmation) reaches the
    worker, which answers and stops; "Status snapshot now" brings a fresh snapshot onto the page."""
    from services.status.service import StatusService
    from shared import runtime as runtime_module
    from shared.runtime import ServiceRuntime

    width, height = VIEWPORTS[size]
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    dialogs: list[str] = []

    def confirm(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    settings = make_settings(system_status_interval=3600)
    server = live_api(system_status_interval=3600)
    worker_rt = ServiceRuntime("worker", settings)
    worker_stopped = threading.Event()
    worker_bus = MqttBus(settings, "worker")
    worker_rt.attach(worker_bus, stop=worker_stopped.set)
    status_rt = ServiceRuntime("status", settings)
    status_bus = MqttBus(settings, "status")
    status = StatusService(settings, LocalStore(settings.data_dir), status_bus)
    status_rt.attach(status_bus, actions={"snapshot": status.request_snapshot})
    import logging

    logging.getLogger().addHandler(worker_rt.recent)  # two runtimes in one process: the second reset the handlers
    stop = threading.Event()
    loop = threading.Thread(target=status.run, args=(stop,), daemon=True)
    for bus in (worker_bus, status_bus):
        bus.start()
        assert bus.wait_connected(15)
    loop.start()
    try:
        logging.getLogger("services.video_worker.upload_step").warning(
            "upload of videos/player42/court1-2026-11-25-1800.mp4 failed; retrying in 30 s: a very long reason "
            "that goes on and on to see that a long message wraps on a phone instead of widening the page")
        logging.getLogger("services.video_worker.media.audio_track").error(
            "encoder h264_v4l2m2m failed: can't configure encoder")
        page.goto(server.url + "/")
        page.fill("#token", TOKEN)
        page.click("#login button[type=submit]")
        expect(page.locator("#live")).to_have_text("live", timeout=15_000)
        worker_card = page.locator('#device-list .svc[data-service="worker"]')
        expect(worker_card.locator(".badge")).to_have_text("online", timeout=15_000)
        expect(worker_card.locator(".svc-last")).to_contain_text("can't configure encoder", timeout=15_000)
        worker_card.locator("summary").click()
        expect(worker_card.locator(".records li")).to_have_count(2)
        expect(worker_card.locator(".records li").nth(1)).to_contain_text("a very long reason")
        keep(page, tmp_path, f"services-{size}")
        _assert_fits(_layout(page), width)

        page.click("#snapshot")
        expect(page.locator("#device-result")).to_contain_text("Status snapshot collected at", timeout=20_000)
        expect(page.locator("#health-empty")).to_be_hidden()

        worker_card.locator("button.restart").click()
        expect(page.locator("#device-result")).to_contain_text("worker: accepted.", timeout=15_000)
        assert worker_stopped.wait(5), "the worker was told to stop"
        assert dialogs and dialogs[-1].startswith("Restart the worker service?")
        keep(page, tmp_path, f"services-restarted-{size}")
        _assert_fits(_layout(page), width)
    finally:
        stop.set()
        status.wake()
        loop.join(10)
        for bus in (worker_bus, status_bus):
            bus.stop()
        worker_rt.close()
        status_rt.close()
        runtime_module._restart_requested.clear()
    assert errors == []


_RED_BOX_JS = """(img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let x0 = c.width, y0 = c.height, x1 = -1, y1 = -1;
    for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
        const i = 4 * (y * c.width + x);
        if (d[i] > 195 && d[i + 1] < 60 && d[i + 2] < 60) {
            x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
        }
    }
    return x1 < 0 ? null : [x0, y0, x1, y1, c.width, c.height];
}"""


def _wait_for(check, timeout: float = 15.0) -> None:
    """Polls from Python: the dashboard's CSP (script-src 'self') refuses the eval behind wait_for_function."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_logos_panel_places_a_users_logos_and_shows_the_preview(live_api, settings, browser_page, tmp_path, size):
    """The operator picks a user, moves their logo bottom-left at 30 % of the width; putting the sponsor logo in the
    same corner is refused on its row (the API's 422), another corner is saved; the preview (the API's JPEG) shows
    the red logo where and as wide as chosen."""
    from tests.media import expected_logo_body, make_logo_png

    width, height = VIEWPORTS[size]
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    server = live_api()
    for kind, rgba in (("logo", (255, 0, 0, 255)), ("sponsor", (0, 0, 255, 255))):
        png = make_logo_png(tmp_path / f"{kind}.png", rgba=rgba).read_bytes()
        files = {"file": (f"{kind}.png", png, "image/png")}
        r = (httpx.put(f"{server.url}/users/player42/media/logo", files=files, headers=AUTH) if kind == "logo"
             else httpx.post(f"{server.url}/users/player42/media/sponsor_logos", files=files, headers=AUTH))
        assert r.status_code in (200, 201), r.text
    page.goto(server.url + "/")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#app")).to_be_visible(timeout=15_000)
    page.fill("#logo-user-id", "player42")
    page.click("#logo-user button[type=submit]")
    rows = page.locator("#logo-rows .logo-row")
    expect(rows).to_have_count(2, timeout=15_000)
    logo, sponsor = rows.nth(0), rows.nth(1)
    expect(logo.locator("input[name=width]")).to_be_disabled()  # Default: nothing to size
    _wait_for(lambda: page.locator("#logo-preview").evaluate("(img) => img.complete && img.naturalWidth > 0"))

    logo.locator("select[name=corner]").select_option("bottom-left")
    logo.locator("input[name=width]").fill("30")
    logo.locator("input[name=margin]").fill("0")
    sponsor.locator("select[name=corner]").select_option("bottom-left")
    page.click("#logo-save")
    expect(sponsor.locator(".error")).to_contain_text("both placed bottom-left", timeout=15_000)
    expect(page.locator("#logos-result")).to_contain_text("Not saved")
    keep(page, tmp_path, f"logos-refused-{size}")
    _assert_fits(_layout(page), width)

    sponsor.locator("select[name=corner]").select_option("top-left")
    page.click("#logo-save")
    expect(page.locator("#logos-result")).to_contain_text("Saved", timeout=15_000)
    stored = httpx.get(f"{server.url}/users/player42/settings", headers=AUTH).json()
    assert stored["logo_placement"] == {"corner": "bottom-left", "width_fraction": 0.3, "margin_fraction": 0.0}
    assert stored["sponsor_logo_placements"] == [{"corner": "top-left", "width_fraction": 0.15,
                                                  "margin_fraction": 0.02}]
    preview = page.locator("#logo-preview")
    _wait_for(lambda: (b := preview.evaluate(_RED_BOX_JS)) is not None and b[1] > b[5] / 2)  # red now bottom-left
    box = preview.evaluate(_RED_BOX_JS)
    frame = (box[4], box[5])
    assert frame == (settings.camera_width, settings.camera_height)  # at most 960 wide: here the camera's own size
    want = expected_logo_body(frame, "bottom-left", 0.3, 0.0)
    assert all(abs(g - w) <= 3 for g, w in zip(box[:4], want, strict=True)), (box, want)
    keep(page, tmp_path, f"logos-{size}")
    _assert_fits(_layout(page), width)
    assert errors == []
