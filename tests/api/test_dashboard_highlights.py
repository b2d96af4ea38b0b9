"""The dashboard in headless Chromium: a highlight appears live among the latest videos, marked, with its
thumbnail; it plays and gets a share link that serves it."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from shared.bus import MqttBus
from shared.models import Video, highlight_video_id, storage_path_for_highlight
from shared.payloads import HighlightCreated
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.api.test_dashboard_browser import browser_page, keep  # noqa: F401 - the fixture
from tests.conftest import TOKEN
from tests.media import make_recording


def test_a_highlight_appears_live_and_is_shared(live_api, settings, browser_page, tmp_path, camera_id):  # noqa: F811
    server = live_api()
    page = browser_page
    page.goto(server.url + "/")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    expect(page.locator("#no-videos")).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    store = LocalStore(settings.data_dir)
    clip = make_recording(tmp_path / "clip.mp4", 2.0)
    path = storage_path_for_highlight("player42", "court1", "h20261130T180000000")
    store.put_object("videos", path, clip, "video/mp4")
    video = store.upsert_video(Video(
        id=highlight_video_id("court1", "h20261130T180000000"), kind="highlight", booking_id="court1",
        user_id="player42", camera_id=camera_id, storage_path=path, size_bytes=clip.stat().st_size,
        duration_seconds=2.0, uploaded_at=utc_now()))
    bus = MqttBus(settings, "test-worker", client_id=f"test-{camera_id}-worker", outbox_path=tmp_path / "out.db")
    bus.start()
    try:
        assert bus.wait_connected(15)
        bus.publish(bus.topics.highlight_created, HighlightCreated(
            clip_id="h20261130T180000000", booking_id="court1", video_id=video.id, storage_path=path,
            start_at=utc_now(), end_at=utc_now(), duration_s=2.0, size_bytes=video.size_bytes, copied=True,
            presses=1))
        card = page.locator(f'.video-card.highlight[data-video-id="{video.id}"]')
        expect(card).to_be_visible(timeout=15_000)
        expect(card).to_contain_text("Highlight")
    finally:
        bus.stop()
    assert page.evaluate("window.__sameDocument") is True  # arrived live, no reload
    # (expect's polling, not wait_for_function: a string predicate that must be polled is an eval the CSP refuses)
    expect(card.locator("img")).to_have_js_property("naturalWidth", 320, timeout=15_000)
    card.click()
    expect(page.locator("#player-title")).to_have_text("Highlight of court1 (player42)")
    page.click("#share-button")
    share = page.locator("#share-url")
    expect(share).to_be_visible(timeout=10_000)
    url = share.input_value()
    assert "/share/" in url
    assert httpx.get(url + "/video").status_code == 200
    keep(page, tmp_path, "dashboard-highlight")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the share link wraps, nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    keep(page, tmp_path, "dashboard-highlight-phone")
