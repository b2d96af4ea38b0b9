"""GET /status and GET /status/history return exactly what the status service publishes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from services.status.service import StatusService
from shared.bus import MqttBus
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def test_latest_and_history_match_the_published_snapshots(settings, client, listen, pi_probes):
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers=AUTH).status_code == 404  # nothing reported yet
    feed = listen(f"ezrec/{settings.camera_id}/status")
    bus = MqttBus(settings, "status")
    service = StatusService(settings, LocalStore(settings.data_dir), bus, probes=pi_probes)
    bus.start()
    try:
        assert bus.wait_connected(15)
        before = utc_now()
        first = service.tick()
        second = service.tick()
        feed.wait_for(lambda t, p: len(feed.messages) >= 2, timeout=15)
    finally:
        bus.stop()
    published = [json.loads(p) for _, p, _ in feed.messages]

    latest = client.get("/status", headers=AUTH)
    assert latest.status_code == 200
    body = latest.json()
    assert body["camera_id"] == settings.camera_id
    assert body["snapshot"] == published[-1]  # field for field what MQTT carried
    assert body["snapshot"]["cpu_temperature_c"] == 61.234 and body["snapshot"]["throttling"]["raw"] == "0x50005"
    assert "cloud_reachable" not in body["snapshot"]

    history = client.get("/status/history", headers=AUTH, params={"since": isoformat_z(before)})
    assert history.status_code == 200
    assert [r["snapshot"] for r in history.json()] == published
    assert [r["collected_at"] for r in history.json()] == [isoformat_z(s.collected_at) for s in (first, second)]
    later = client.get("/status/history", headers=AUTH, params={"since": isoformat_z(second.collected_at)})
    assert [r["snapshot"]["collected_at"] for r in later.json()] == [published[-1]["collected_at"]]
    future = client.get("/status/history", headers=AUTH, params={"since": isoformat_z(utc_now() + timedelta(1))})
    assert future.json() == []
    naive = client.get("/status/history", headers=AUTH, params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
