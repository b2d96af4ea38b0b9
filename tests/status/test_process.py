"""`ezrec status` as the real process: wiring of every subscription, alerts, discovery, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from shared.payloads import RecorderFault
from tests.status.test_service import raw_publish


def test_the_status_process_end_to_end(settings, listen, tmp_path):
    cam = settings.camera_id
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "CAMERA_ID": cam, "MQTT_PORT": str(settings.mqtt_port),
           "SYSTEM_STATUS_INTERVAL": "0.5", "ALERT_HOLD_S": "0", "HA_DISCOVERY_PREFIX": f"ha-{cam}",
           "LOG_LEVEL": "WARNING", "API_TOKEN": ""}
    status = listen(f"ezrec/{cam}/status")
    alerts = listen(f"ezrec/{cam}/alerts")
    configs = listen(f"ha-{cam}/+/ezrec_{cam}/+/config")
    availability = listen(f"ezrec/{cam}/status/availability")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "status"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        status.wait_for(lambda t, p: json.loads(p)["broker_connected"] is True, timeout=30)
        configs.wait_for(lambda t, p: t.endswith("/recorder_online/config"), timeout=15)
        raw_publish(settings.mqtt_port, f"ezrec/{cam}/recorder/fault", RecorderFault(
            camera_id=cam, kind="camera_stall", reason="no frames for 5 s").model_dump_json().encode())
        alerts.wait_for(lambda t, p: json.loads(p)["id"] == "camera_fault", timeout=15)
        status.wait_for(lambda t, p: json.loads(p).get("camera_fault") == "no frames for 5 s", timeout=15)
        raw_publish(settings.mqtt_port, f"ezrec/{cam}/recorder/fault", RecorderFault(
            camera_id=cam, kind="camera_stall", reason="frames flow", active=False).model_dump_json().encode())
        alerts.wait_for(lambda t, p: json.loads(p)["id"] == "camera_fault" and json.loads(p)["state"] == "cleared",
                        timeout=15)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    availability.wait_for(lambda t, p: p == b"offline", timeout=10)
    got = [(json.loads(p)["id"], json.loads(p)["state"]) for _, p, _ in alerts.messages]
    assert [a for a in got if a[0] == "camera_fault"] == [("camera_fault", "raised"), ("camera_fault", "cleared")]
    # Nothing else runs here: with ALERT_HOLD_S=0 the three other services are reported offline at once.
    assert sorted(a for a in got if a[0] != "camera_fault") == [
        (f"service_offline:{s}", "raised") for s in ("api", "recorder", "worker")]
