"""Without Supabase there is no cloud outbox: the endpoints and `ezrec outbox` say so plainly, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.api.conftest import AUTH
from tests.conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]
NO_CLOUD = "no cloud outbox: SUPABASE_URL is not set"


def test_the_outbox_endpoints_say_there_is_no_cloud_outbox(client):
    for method, path in [("GET", "/outbox"), ("GET", "/outbox/3"), ("POST", "/outbox/3/replay"),
                         ("DELETE", "/outbox/3")]:
        answer = client.request(method, path, headers=AUTH)
        assert answer.status_code == 404 and answer.json()["detail"].startswith(NO_CLOUD), (method, path)


def test_ezrec_outbox_says_there_is_no_cloud_outbox(live_api):
    server = live_api()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "SUPABASE_", "EZREC_"))}
    for args in (["list"], ["show", "3"], ["replay", "3"], ["drop", "3", "--yes"]):
        done = subprocess.run([sys.executable, "-m", "services.cli", "outbox", *args, "--api", server.url],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**env, "API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 1 and done.stderr.startswith(NO_CLOUD), (args, done.stdout, done.stderr)
    assert httpx.get(f"{server.url}/outbox", headers=AUTH).status_code == 404


def test_ezrec_outbox_without_an_api_or_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "SUPABASE_", "EZREC_"))}
    run = [sys.executable, "-m", "services.cli", "outbox", "list", "--api", "http://127.0.0.1:9"]
    down = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**env, "API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)})
    assert down.returncode == 3 and "cannot reach the API at http://127.0.0.1:9" in down.stderr
    anonymous = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                               env={**env, "PYTHONPATH": str(ROOT)})
    assert anonymous.returncode == 3 and "no API token" in anonymous.stderr


def test_a_service_that_is_not_running_gets_no_command(live_api):
    """Nothing runs here but the API: a restart or a snapshot would only go stale at the broker."""
    server = live_api()
    for path in ("/device/services/worker/restart", "/device/status/snapshot"):
        answer = httpx.post(f"{server.url}{path}", headers=AUTH)
        assert answer.status_code == 409 and "offline" in answer.json()["detail"], (path, answer.text)
    assert httpx.post(f"{server.url}/device/services/printer/restart", headers=AUTH).status_code == 422
    listed = {s["service"]: s for s in httpx.get(f"{server.url}/device/services", headers=AUTH).json()}
    assert set(listed) == {"api", "recorder", "worker", "status"}
    assert listed["worker"]["availability"] == "unknown" and listed["worker"]["pid"] is None
