"""Real worker processes (`python -m services.cli worker`) for the crash and scale-out tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcesses:
    data_dir: Path
    camera_id: str
    mqtt_port: int
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str = "w", **env: str) -> subprocess.Popen:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_", "WORKER_", "EZREC_TEST_"))}
        base.update({
            "PYTHONPATH": str(ROOT), "DATA_DIR": str(self.data_dir), "CAMERA_ID": self.camera_id,
            "MQTT_PORT": str(self.mqtt_port), "ENCODER_PRESET": "ultrafast", "VIDEO_WORKER_CHECK_INTERVAL": "1",
            "WORKER_NICE": "0", "LOG_LEVEL": "INFO",
        })
        base.update(env)
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 - the process owns it; closed at exit
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"], cwd=self.logs, env=base,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str = "w") -> str:
        path = self.logs / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
