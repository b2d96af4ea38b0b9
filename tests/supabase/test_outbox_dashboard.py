"""The dashboard's "Cloud writes" panel in headless Chromium, against the fake cloud refusing two uploads over the
project's upload limit: each is listed with its error, age, booking and the writes it holds back; once the limit is
raised, Replay gets one through; Drop asks first (saying what the booking loses) and drops the other. At 1280x900
and at a phone's 390x844, nothing clipped, no sideways scrolling; screenshots kept."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.api.test_dashboard_browser import VIEWPORTS, _assert_fits, _layout, browser_page, keep  # noqa: F401
from tests.conftest import TOKEN
from tests.supabase.test_outbox_operator import api, finished_video, wait_drained, wait_refused  # noqa: F401


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_cloud_writes_panel_replays_and_drops(api, store, fake_cloud, db, browser_page, tmp_path,  # noqa: F811
                                                  size):
    width, height = VIEWPORTS[size]
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    dialogs: list[str] = []

    def answer(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    fake_cloud.configure(file_size_limit=100_000)  # the videos are 300 kB: over the project's limit
    for booking in ("court1-2026-11-25-1800", "court1-2026-11-25-1930"):
        finished_video(store, tmp_path, booking)
    wait_refused(store, 2)
    first, second = sorted(op.op.id for op in store.outbox.stuck() if op.refused)

    page.goto(api.url + "/")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    cards = page.locator("#outbox-list .op")
    expect(cards).to_have_count(2, timeout=15_000)
    expect(page.locator("#outbox-summary")).to_have_text("2 refused · 4 held back · 0 on their way")
    card = page.locator(f'#outbox-list .op[data-op-id="{first}"]')
    expect(card.locator(".op-head")).to_contain_text("the upload of videos/u1/court1-2026-11-25-1800.mp4")
    expect(card).to_contain_text("court1-2026-11-25-1800 · u1 · video_uploaded here")
    expect(card).to_contain_text("over the project's upload limit of 0.1 MB")
    expect(card).to_contain_text("s ago")
    expect(card).to_contain_text("Holds back 2")
    expect(card).to_contain_text("the videos row of booking court1-2026-11-25-1800")
    keep(page, tmp_path, f"outbox-{size}")
    _assert_fits(_layout(page), width)

    fake_cloud.configure(file_size_limit=50 * 1024 * 1024)  # the operator raises the limit, then replays
    card.locator("button.replay").click()
    expect(page.locator("#outbox-result")).to_contain_text(f"#{first}: applied.", timeout=20_000)
    expect(cards).to_have_count(1, timeout=15_000)
    assert fake_cloud.object_file("videos", "u1/court1-2026-11-25-1800.mp4").exists()

    page.locator(f'#outbox-list .op[data-op-id="{second}"] button.drop').click()
    expect(page.locator("#outbox-result")).to_contain_text(f"Dropped #{second}", timeout=15_000)
    assert dialogs and "The cloud never gets videos/u1/court1-2026-11-25-1930.mp4" in dialogs[-1]
    expect(cards).to_have_count(0, timeout=15_000)
    expect(page.locator("#outbox-empty")).to_be_visible()
    expect(page.locator("#outbox-dropped")).to_be_visible()
    wait_drained(store)
    page.locator("#outbox-dropped summary").click()
    expect(page.locator("#outbox-dropped-list")).to_contain_text(
        f"#{second} the upload of videos/u1/court1-2026-11-25-1930")
    keep(page, tmp_path, f"outbox-done-{size}")
    _assert_fits(_layout(page), width)
    assert errors == []
