"""The operator's device actions as every service runs them (shared/runtime.py), against the real broker: the recent
warnings and errors published retained (redacted, at most 50, kept across a restart) and the API's commands obeyed,
refused, ignored when stale, and dead-lettered when they are junk."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

from shared import runtime as runtime_module
from shared.bus import MqttBus
from shared.payloads import CommandAck, ServiceCommand, ServiceLogs
from shared.runtime import RESTART_EXIT_CODE, ServiceRuntime, exit_code
from shared.timeutil import utc_now

SUPABASE_KEY = "supabase-service-role-key-0123456789"
JWT_SECRET = "jwt-secret-with-at-least-32-characters-4242"
BROKER_PASSWORD = "broker-password-of-the-worker-77"
OTHER_BROKER_PASSWORD = "broker-password-of-the-api-88"


@pytest.fixture
def secret_settings(make_settings, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD_API", OTHER_BROKER_PASSWORD)  # as a local .env loaded into the environment
    return make_settings(mqtt_username="worker", mqtt_password=BROKER_PASSWORD, supabase_jwt_secret=JWT_SECRET,
                         supabase_service_role_key=SUPABASE_KEY)


@pytest.fixture
def attached(secret_settings) -> Iterator[tuple[ServiceRuntime, MqttBus, threading.Event]]:
    runtime = ServiceRuntime("worker", secret_settings)
    stopped = threading.Event()
    bus = MqttBus(secret_settings, "worker")
    runtime.attach(bus, stop=stopped.set)
    bus.start()
    assert bus.wait_connected(10)
    yield runtime, bus, stopped
    bus.stop()
    runtime.close()
    runtime_module._restart_requested.clear()


def _secrets(settings) -> list[str]:
    return [settings.api_token.get_secret_value(), SUPABASE_KEY, JWT_SECRET, BROKER_PASSWORD, OTHER_BROKER_PASSWORD]


def test_recent_warnings_are_published_redacted_capped_and_kept(attached, secret_settings, listen):
    runtime, _bus, _ = attached
    logs = listen(f"ezrec/{secret_settings.camera_id}/worker/logs")
    log = logging.getLogger("tests.leaky")
    token = secret_settings.api_token.get_secret_value()
    log.info("an INFO line is not a warning %s", token)
    log.warning("connecting with key %s and password %s", SUPABASE_KEY, BROKER_PASSWORD)
    try:
        raise RuntimeError(f"refused: Authorization: Bearer {token} (jwt {JWT_SECRET}, api {OTHER_BROKER_PASSWORD})")
    except RuntimeError:
        log.exception("upload failed")
    logs.wait_for(lambda t, p: b"upload failed" in p, timeout=15)
    for i in range(60):
        log.error("error number %d", i)

    def complete(_topic: str, payload: bytes) -> bool:
        records = ServiceLogs.model_validate_json(payload).records
        return bool(records) and records[-1].message == "error number 59"

    _, payload = logs.wait_for(complete, timeout=15)
    published = ServiceLogs.model_validate_json(payload)
    assert published.service == "worker" and published.camera_id == secret_settings.camera_id
    assert len(published.records) == 50, "the last 50 records only"
    assert published.records[0].message == "error number 10"
    everything = b"".join(p for _, p, _ in logs.messages)
    assert b"***" in everything, "the secrets were there, masked"
    for secret in _secrets(secret_settings):
        assert secret.encode() not in everything, secret
    first = [ServiceLogs.model_validate_json(p) for _, p, _ in logs.messages]
    masked = [r.message for item in first for r in item.records if "***" in r.message]
    assert any("RuntimeError: refused: Authorization: Bearer ***" in m for m in masked), masked
    assert not any("INFO line" in r.message for item in first for r in item.records)

    # Kept across a restart: the next process publishes what came before it, then its own.
    runtime.close()
    kept = json.loads((secret_settings.state_dir / "logs-worker.json").read_text())
    assert len(kept) == 50 and kept[-1]["message"] == "error number 59"
    assert not any(secret in json.dumps(kept) for secret in _secrets(secret_settings))
    again = ServiceRuntime("worker", secret_settings)
    try:
        bus = MqttBus(secret_settings, "worker", client_id=f"ezrec-{secret_settings.camera_id}-worker")
        again.attach(bus)
        logging.getLogger("tests.leaky").warning("after the restart")
        records = again.recent.records()
        assert records[-1].message == "after the restart" and records[-2].message == "error number 59"
    finally:
        again.close()


def _command(settings, action: str = "restart", **extra: object) -> ServiceCommand:
    return ServiceCommand(camera_id=settings.camera_id, service="worker", action=action,  # type: ignore[arg-type]
                          request_id=extra.pop("request_id", f"r-{action}"), **extra)  # type: ignore[arg-type]


def _acks(listener) -> dict[str, CommandAck]:
    return {a.request_id: a for a in (CommandAck.model_validate_json(p) for _, p, _ in listener.messages)}


def test_a_restart_command_stops_the_service_and_sets_the_restart_exit_code(attached, secret_settings, listen):
    runtime, bus, stopped = attached
    acks = listen(f"ezrec/{secret_settings.camera_id}/worker/command/ack")
    dead = listen("ezrec/deadletter")
    command_topic = f"ezrec/{secret_settings.camera_id}/worker/command"
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect("127.0.0.1", secret_settings.mqtt_port)
    sender.loop_start()
    try:
        def send(payload: bytes) -> None:
            sender.publish(command_topic, payload, qos=1).wait_for_publish(10)

        send(b'{"action": "rm -rf /"}')  # junk: dead-lettered like any payload
        dead.wait_for(lambda t, p: json.loads(p)["topic"] == command_topic)
        send(_command(secret_settings, sent_at=utc_now() - timedelta(minutes=5),
                      request_id="stale").model_dump_json().encode())
        send(_command(secret_settings, "snapshot").model_dump_json().encode())  # the worker has no snapshot
        send(_command(secret_settings, "publish_logs").model_dump_json().encode())
        acks.wait_for(lambda t, p: json.loads(p)["request_id"] == "r-publish_logs")
        assert not stopped.is_set() and exit_code(0) == 0
        send(_command(secret_settings, reason="stuck encode").model_dump_json().encode())
        assert stopped.wait(10), "the restart command called the service's stop"
        acks.wait_for(lambda t, p: json.loads(p)["request_id"] == "r-restart")
    finally:
        sender.disconnect()
        sender.loop_stop()
    got = _acks(acks)
    assert got["stale"].outcome == "ignored" and "300 s ago" in got["stale"].detail
    assert got["r-snapshot"].outcome == "refused"
    assert got["r-publish_logs"].outcome == "done"
    assert got["r-restart"].outcome == "accepted" and str(RESTART_EXIT_CODE) in got["r-restart"].detail
    assert runtime.restart_requested and exit_code(0) == RESTART_EXIT_CODE
    assert exit_code(1) == 1, "a failure stays a failure"
    assert any("restarting on the operator's request r-restart: stuck encode" in r.message
               for r in runtime.recent.records())


def test_a_restart_sent_before_the_process_started_is_not_obeyed_again(attached, secret_settings, listen):
    runtime, bus, stopped = attached
    acks = listen(f"ezrec/{secret_settings.camera_id}/worker/command/ack")
    earlier = runtime.started_at - timedelta(seconds=5)  # the command this process was started again for
    bus.publish(bus.topics.command("worker"), _command(secret_settings, sent_at=earlier, request_id="again"))
    acks.wait_for(lambda t, p: json.loads(p)["request_id"] == "again")
    assert _acks(acks)["again"].outcome == "ignored" and not stopped.is_set()
