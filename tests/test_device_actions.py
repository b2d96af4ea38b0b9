"""The operator's device actions on the real thing: `ezrec up` (four real processes) and a real broker.

Each service is restarted from the API (the worker through `ezrec device restart`) and comes back as a new process
(new pid in its heartbeat, `online` again) without the supervisor's crash backoff; a status snapshot is collected on
request long before its 60 s interval; junk on a command topic is dead-lettered and restarts nothing; and the
services' recent warnings, published and served by the API, never show the API token, the Supabase key or JWT
secret, or a broker password, also when an operator's note quotes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from shared.payloads import ServiceCommand, ServiceLogs
from tests.broker import free_port
from tests.conftest import TOKEN

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVICES = ("api", "recorder", "worker", "status")
SECRETS = {
    "MQTT_PASSWORD": "broker-password-of-this-process-31",
    "MQTT_PASSWORD_API": "broker-password-of-the-api-user-32",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key-that-must-not-leak-33",  # no SUPABASE_URL: still a secret
    "SUPABASE_JWT_SECRET": "jwt-secret-with-at-least-32-characters-34",
}


class Stack:
    def __init__(self, base: str, proc: subprocess.Popen, workdir: Path, env: dict[str, str]) -> None:
        self.base, self.proc, self.workdir, self.env = base, proc, workdir, env
        self.http = httpx.Client(base_url=base, headers=AUTH, timeout=30)

    @property
    def log(self) -> str:
        return (self.workdir / "up.log").read_text(errors="replace")

    def heartbeat_pid(self, service: str) -> int | None:
        try:
            data = json.loads((self.workdir / "data" / "state" / f"heartbeat-{service}.json").read_text())
        except (OSError, ValueError):
            return None
        return int(data["pid"]) if time.time() - data["at"] < 30 else None

    def services(self) -> dict[str, dict]:
        try:
            answer = self.http.get("/device/services")
        except httpx.HTTPError:
            return {}
        return {s["service"]: s for s in answer.json()} if answer.status_code == 200 else {}

    def wait_all_up(self, timeout: float = 60, other_than: dict[str, int] | None = None) -> dict[str, int]:
        """Every service online, with a fresh heartbeat (a new pid for those in `other_than`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {s: self.heartbeat_pid(s) for s in SERVICES}
            seen = self.services()
            fresh = all(pids.values()) and all(pids[s] != old for s, old in (other_than or {}).items())
            if fresh and all(seen.get(s, {}).get("availability") == "online" for s in SERVICES):
                return pids  # type: ignore[return-value]
            time.sleep(0.2)
        raise AssertionError(f"not all up: {pids} {seen}\n{self.log[-3000:]}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", *args, "--api", self.base], capture_output=True,
                              text=True, timeout=60, cwd=self.workdir, env=self.env)


@pytest.fixture
def stack(tmp_path: Path, running_broker, camera_id: str) -> Iterator[Stack]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_", "SUPABASE_"))},
        "PYTHONPATH": str(ROOT), "DATA_DIR": str(tmp_path / "data"), "CAMERA_ID": camera_id,
        "MQTT_PORT": str(running_broker.port), "MQTT_USERNAME": "ezrec",  # the test broker takes any login
        "API_PORT": str(port), "API_TOKEN": TOKEN, "CAMERA_WIDTH": "320", "CAMERA_HEIGHT": "240", "CAMERA_FPS": "15",
        "ENCODER_PRESET": "ultrafast", "SYSTEM_STATUS_INTERVAL": "60", **SECRETS,
    }
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    stack = Stack(f"http://127.0.0.1:{port}", proc, tmp_path, env)
    try:
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _secrets() -> list[str]:
    return [TOKEN, *SECRETS.values()]


def _raw_client(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_each_service_restarts_from_the_api_and_comes_back(stack: Stack, running_broker, camera_id, listen):
    operator = listen(f"ezrec/{camera_id}/operator/action")
    logs = listen(f"ezrec/{camera_id}/+/logs")
    dead = listen("ezrec/deadletter")
    pids = stack.wait_all_up()

    # A status snapshot now, not in 60 s.
    asked = time.monotonic()
    snap = stack.http.post("/device/status/snapshot")
    assert snap.status_code == 200, snap.text
    assert snap.json()["ack"]["outcome"] == "done" and snap.json()["snapshot"]["camera_id"] == camera_id
    assert time.monotonic() - asked < 10
    cli_snap = stack.cli("device", "snapshot")
    assert cli_snap.returncode == 0 and cli_snap.stdout.startswith("snapshot collected"), cli_snap.stderr

    # Junk on a command topic is dead-lettered; a command for another camera is refused; neither restarts anything.
    raw = _raw_client(running_broker.port)
    try:
        topic = f"ezrec/{camera_id}/recorder/command"
        raw.publish(topic, b'{"action": "restart"}', qos=1).wait_for_publish(10)
        dead.wait_for(lambda t, p: json.loads(p)["topic"] == topic and json.loads(p)["service"] == "recorder")
        # The operator's note quoting every secret, straight to a service: its own log must mask them.
        note = "restarting with " + " ".join(_secrets())
        command = ServiceCommand(camera_id=camera_id, service="status", action="restart", request_id="direct-1",
                                 reason=note[:300])
        raw.publish(f"ezrec/{camera_id}/status/command", command.model_dump_json(), qos=1).wait_for_publish(10)
    finally:
        raw.disconnect()
        raw.loop_stop()
    pids = stack.wait_all_up(other_than={"status": pids["status"]})

    for service in ("recorder", "api"):
        before = pids[service]
        answer = stack.http.post(f"/device/services/{service}/restart",
                                 json={"reason": f"test {' '.join(_secrets())}"[:300]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ack"]["outcome"] == "accepted", answer.json()
        assert f"pid {before}" in answer.json()["message"]
        pids = stack.wait_all_up(other_than={service: before})
    restarted = stack.cli("device", "restart", "worker", "--reason", "from the CLI")
    assert restarted.returncode == 0 and restarted.stdout.startswith("worker: accepted"), restarted.stderr
    pids = stack.wait_all_up(other_than={"worker": pids["worker"]})

    # Every restart was the operator's, not a crash: no backoff, nothing "exited with".
    log = stack.log
    assert log.count("stopped for the operator's restart") == 4, log[-4000:]
    assert log.count("restarting on the operator's request") == 4, "each command obeyed once"
    assert "exited with" not in log
    seen = {e["target"]: e for e in (json.loads(p) for _, p, _ in operator.messages)
            if e["action"] == "service_restart"}
    assert set(seen) >= {"recorder", "api"}

    # Each service lists its restart among its recent warnings, secrets masked, as the CLI shows them too.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        services = stack.services()
        noted = {name: [r["message"] for r in s["records"] if "operator's request" in r["message"]]
                 for name, s in services.items()}
        if all(noted.get(s) for s in SERVICES):
            break
        time.sleep(0.3)
    assert all(noted.get(s) for s in SERVICES), noted
    assert any("direct-1: restarting with ***" in m for m in noted["status"]), noted["status"]
    assert any("(reason: test ***" in m or ": test ***" in m for m in noted["recorder"]), noted["recorder"]
    listed = stack.cli("device", "logs", "worker")
    assert listed.returncode == 0 and "restarting on the operator's request" in listed.stdout
    assert "from the CLI" in listed.stdout

    everything = [stack.log, json.dumps(stack.services()), listed.stdout,
                  *(p.decode() for _, p, _ in logs.messages), *(p.decode() for _, p, _ in operator.messages)]
    for secret in _secrets():
        assert not any(secret in text for text in everything), secret
    assert all(ServiceLogs.model_validate_json(p).camera_id == camera_id for _, p, _ in logs.messages)

    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(30) == 0

