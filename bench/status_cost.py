"""What the status service costs: CPU share of one core and RSS of the real `ezrec status` process.

Starts a private Mosquitto, runs `python -m services.cli status` twice against it:
  1. SYSTEM_STATUS_INTERVAL=1 (a tick every second) to measure the cost of one tick;
  2. SYSTEM_STATUS_INTERVAL=60 (the default) with no tick inside the window: the idle cost
     (MQTT keepalive, outbox flusher, heartbeat).
The default's share is idle + per-tick / 60. CPU time is the process's user + system time (children
included, e.g. vcgencmd on a Pi), read with psutil. Prints one JSON object.

    python bench/status_cost.py [--window 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.broker import Broker  # noqa: E402

LIMIT_CPU_PERCENT = 1.0
LIMIT_RSS_MB = 60.0
HEAVY = {"fastapi", "starlette", "uvicorn", "av", "numpy", "httpx", "multipart"}


class StatusCounter:
    def __init__(self, port: int, topic: str) -> None:
        self.count = 0
        self.first = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, *_args: object) -> None:
        self.count += 1
        self.first.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def measure(broker: Broker, workdir: Path, interval: float, window: float, warmup: float) -> dict:
    camera = f"bench{os.getpid()}i{int(interval)}"
    data_dir = workdir / camera
    env = {**os.environ, "DATA_DIR": str(data_dir), "CAMERA_ID": camera, "MQTT_PORT": str(broker.port),
           "SYSTEM_STATUS_INTERVAL": str(interval), "LOG_LEVEL": "WARNING", "API_TOKEN": ""}
    counter = StatusCounter(broker.port, f"ezrec/{camera}/status")
    child = subprocess.Popen([sys.executable, "-m", "services.cli", "status"], env=env, cwd=workdir)
    proc = psutil.Process(child.pid)
    try:
        started = time.monotonic()
        if not counter.first.wait(60):
            raise RuntimeError("the status service published nothing within 60 s")
        startup_s = time.monotonic() - started
        time.sleep(warmup)
        cpu0, n0, t0 = cpu_seconds(proc), counter.count, time.monotonic()
        rss = []
        while time.monotonic() - t0 < window:
            time.sleep(1.0)
            rss.append(proc.memory_info().rss)
        cpu1, n1, t1 = cpu_seconds(proc), counter.count, time.monotonic()
        uss = proc.memory_full_info().uss
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        counter.close()
    elapsed = t1 - t0
    return {
        "interval_s": interval,
        "window_s": round(elapsed, 1),
        "ticks": n1 - n0,
        "cpu_s": round(cpu1 - cpu0, 4),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / elapsed, 3),
        "rss_mb": round(max(rss) / 1e6, 1),
        "uss_mb": round(uss / 1e6, 1),
        "startup_s": round(startup_s, 2),
        "exit_code": child.returncode,
    }


def heavy_imports() -> list[str]:
    """Modules the status process loads that it does not need (it should load none of these)."""
    code = ("import json, sys, services.cli, services.status.main; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return sorted(set(json.loads(out)) & HEAVY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="status-cost-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "mosquitto")
        broker.start()
        try:
            busy = measure(broker, workdir, 1.0, args.window, args.warmup)
            idle = measure(broker, workdir, 60.0, args.window, args.warmup)
        finally:
            broker.stop()
    idle_rate = idle["cpu_s"] / idle["window_s"]  # CPU seconds per second with no tick
    per_tick_s = max(0.0, busy["cpu_s"] - idle_rate * busy["window_s"]) / max(busy["ticks"], 1)
    default_percent = 100 * (idle_rate + per_tick_s / 60.0)
    rss_mb = max(busy["rss_mb"], idle["rss_mb"])
    print(json.dumps({
        "cpu_percent_of_one_core": round(default_percent, 3),
        "rss_mb": rss_mb,
        "interval_s": 60.0,
        "method": "default interval extrapolated: idle share + per-tick CPU / 60",
        "per_tick_cpu_ms": round(per_tick_s * 1000, 2),
        "idle_cpu_percent_of_one_core": idle["cpu_percent_of_one_core"],
        "measured_interval_1s": busy,
        "measured_interval_60s": idle,
        "heavy_imports": heavy_imports(),
        "limits": {"cpu_percent_of_one_core": LIMIT_CPU_PERCENT, "rss_mb": LIMIT_RSS_MB},
        "within_limits": default_percent < LIMIT_CPU_PERCENT and rss_mb < LIMIT_RSS_MB,
        "cpus": psutil.cpu_count(),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
