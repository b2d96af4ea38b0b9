"""`ezrec health`: the containers' healthcheck reads its settings like Settings does, without loading it."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared import health
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    pytest.param({}, "", id="defaults"),
    pytest.param({"DATA_DIR": "/srv/a", "API_PORT": "8100"}, "", id="environment"),
    pytest.param({"data_dir": "/srv/lower"}, "", id="environment-any-case"),
    pytest.param({}, "DATA_DIR=/srv/b\nAPI_PORT=8200\n", id="dotenv"),
    pytest.param({"DATA_DIR": "/srv/env"}, "DATA_DIR=/srv/file\nAPI_PORT=8300\n", id="environment-wins"),
    pytest.param({}, "# court 3\nexport DATA_DIR='/srv/quoted dir'\nAPI_PORT=\"8400\"\n", id="dotenv-export-quotes"),
    pytest.param({}, "DATA_DIR=/srv/c # the SSD\n\nAPI_PORT = 8500\n", id="dotenv-comment-spaces"),
    pytest.param({}, "DATA_DIR=/srv/first\nDATA_DIR=/srv/last\n", id="dotenv-last-wins"),
]


@pytest.mark.parametrize(("environ", "dotenv"), CASES)
def test_reads_data_dir_and_api_port_as_settings_does(tmp_path, monkeypatch, environ, dotenv):
    for name in ("DATA_DIR", "API_PORT", "data_dir", "api_port"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(dotenv)
    settings = Settings()
    assert Path(health.setting("DATA_DIR")) / "state" == settings.state_dir
    assert int(health.setting("API_PORT")) == settings.api_port


def _beat(state: Path, service: str, age: float) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / f"heartbeat-{service}.json").write_text(json.dumps({"pid": 7, "at": time.time() - age}))


def test_heartbeat_age_decides(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert health.main(["status"]) == 1
    assert "no heartbeat" in capsys.readouterr().out
    _beat(tmp_path / "state", "status", age=health.HEARTBEAT_STALE_S + 5)
    assert health.main(["status"]) == 1
    assert "old" in capsys.readouterr().out
    _beat(tmp_path / "state", "status", age=1)
    assert health.main(["status"]) == 0
    assert capsys.readouterr().out.startswith("status healthy: heartbeat 1.")


class _Health(http.server.BaseHTTPRequestHandler):
    answers = {"/health": (200, b'{"status": "ok", "mqtt_connected": true}')}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code, body = self.answers.get(self.path, (404, b"{}"))
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.mark.parametrize(("code", "body", "healthy"), [
    (200, b'{"status": "ok"}', True),
    (503, b'{"status": "starting"}', False),
    (200, b"<html>", False),
])
def test_api_probe_reads_the_http_answer(monkeypatch, code, body, healthy):
    monkeypatch.setattr(_Health, "answers", {"/health": (code, body)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ok, detail = health.api_answers(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert ok is healthy, detail
    if healthy:
        assert detail == "{'status': 'ok'}"


def test_api_probe_and_bad_arguments(tmp_path, monkeypatch, capsys):
    from tests.broker import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_PORT", str(free_port()))
    assert health.main(["api"]) == 1
    assert capsys.readouterr().out.startswith("api unhealthy:")
    monkeypatch.setenv("API_PORT", "not-a-port")
    assert health.main(["api"]) == 1
    assert health.main(["camera"]) == 2
    assert health.main([]) == 2


def test_ezrec_health_loads_no_third_party_package(tmp_path):
    """It runs every 10 s in every container: no pydantic, no numpy, no av."""
    code = ("import sys; from services.cli import main; code = main(['health', 'worker']); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pydantic_settings', 'numpy', "
            "'av', 'paho', 'fastapi', 'dotenv'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
