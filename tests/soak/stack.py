"""Everything the soak owns and can break: a small filesystem for DATA_DIR, its own Mosquitto, PostgreSQL with
the fake Supabase in front of it, a camera (a real RTSP server, or the recorder's synthetic one with its freeze
hook), and `ezrec up` with the four services."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.broker import Broker, free_port, wait_port
from tests.conftest import TOKEN
from tests.supabase import pg
from tests.supabase.conftest import KEY, FakeCloud

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
JWT_SECRET = "soak-jwt-secret-0123456789abcdef0123456789"
FPS = 15
KEYFRAME_S = 1.0
"""The RTSP camera sends a keyframe every second (rtsp_server.py key-int-max = fps)."""
SEGMENT_S = 2.0
STALL_S = 2.0


@dataclass
class SmallDisk:
    """DATA_DIR's own filesystem, so the disk really fills: a tmpfs with a size limit when we may mount one
    (root), else a plain directory on the machine's disk (then `disk_fill` fills that disk's free space down
    to the guard's threshold, which is too much to ask of a shared machine: the soak skips that fault and says
    so in its summary)."""

    path: Path
    size_mb: int
    mounted: bool = False
    reason: str = ""

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.reason = "not root: cannot mount a tmpfs"
            return
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs",
                               str(self.path)], capture_output=True, text=True)
        if done.returncode != 0:
            self.reason = f"mount -t tmpfs failed: {done.stderr.strip()}"
            return
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def used_bytes(self) -> int:
        return shutil.disk_usage(self.path).used


class RtspCamera:
    """tests/soak/rtsp_server.py under Debian's python3 (GStreamer's RTSP server through python3-gi)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.frozen = False

    @staticmethod
    def available() -> str | None:
        """None when the server can run here, else why not."""
        if not Path(SYSTEM_PYTHON).exists():
            return f"{SYSTEM_PYTHON} missing"
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "gi.require_version('Gst', '1.0'); from gi.repository import Gst, GstRtspServer; "
                                "Gst.init(None); assert Gst.ElementFactory.find('x264enc')"],
                               capture_output=True, text=True)
        return None if probe.returncode == 0 else ("GStreamer's RTSP server is not installed: run "
                                                   f"scripts/system-deps.sh rtsp ({probe.stderr.strip()[-200:]})")

    def env(self) -> dict[str, str]:
        return {"CAMERA_SOURCE": self.url}

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests/soak/rtsp_server.py"), "--port",
                                          str(self.port), "--size", "320x240", "--fps", str(FPS)],
                                         stdout=out, stderr=subprocess.STDOUT)
        if not wait_port(self.port, timeout=15):
            raise RuntimeError(f"the RTSP server did not come up; see {self.log}")
        self.frozen = False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self.frozen = False

    def freeze(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.proc and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SyntheticSource:
    """The recorder's own synthetic camera (CAMERA_SOURCE=synthetic, encoded at capture), frozen through its test
    hook: while the freeze file exists it delivers no frame (shared/failpoints.py). No server: it
    cannot be killed and restarted, so the soak skips camera_restart on it."""

    url = "synthetic"

    def __init__(self, freeze_file: Path) -> None:
        self.freeze_file = freeze_file
        self.frozen = False

    def env(self) -> dict[str, str]:
        return {"CAMERA_SOURCE": self.url, "EZREC_TEST_CAMERA_FREEZE_FILE": str(self.freeze_file)}

    def start(self) -> None:
        self.thaw()

    def kill(self) -> None:
        self.thaw()

    def freeze(self) -> None:
        self.freeze_file.touch()
        self.frozen = True

    def thaw(self) -> None:
        self.freeze_file.unlink(missing_ok=True)
        self.frozen = False

    @property
    def running(self) -> bool:
        return True


@dataclass
class Stack:
    work: Path
    camera_kind: str = "rtsp"
    disk_mb: int = 160
    min_free_mb: int = 24
    disk: SmallDisk = field(init=False)
    broker: Broker = field(init=False)
    camera: RtspCamera | SyntheticSource = field(init=False)
    cloud: FakeCloud = field(init=False)
    camera_id: str = field(init=False)
    api_port: int = field(init=False)
    up: subprocess.Popen | None = None
    _pg: pg.PgServer | None = None
    _dbname: str = ""

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.disk = SmallDisk(self.work / "disk", self.disk_mb)
        self.broker = Broker(self.work / "mosquitto")
        self.camera = (SyntheticSource(self.work / "camera.frozen") if self.camera_kind == "synthetic"
                       else RtspCamera(self.work / "rtsp.log"))
        self.camera_id = f"soak{os.getpid()}"
        self.api_port = free_port()

    @property
    def data_dir(self) -> Path:
        return self.disk.path / "data"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def up_log(self) -> Path:
        return self.work / "up.log"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_", "SUPABASE_", "EZREC_"))}
        return {
            **keep,
            "PYTHONPATH": str(ROOT), "DATA_DIR": str(self.data_dir), "CAMERA_ID": self.camera_id,
            "MQTT_PORT": str(self.broker.port), "API_PORT": str(self.api_port), "API_TOKEN": TOKEN,
            **self.camera.env(), "CAMERA_WIDTH": "320", "CAMERA_HEIGHT": "240",
            "CAMERA_FPS": str(FPS), "CAMERA_WARMUP_S": "3", "CAMERA_STALL_S": str(STALL_S),
            "SEGMENT_SECONDS": str(SEGMENT_S), "MIN_FREE_DISK_MB": str(self.min_free_mb),
            "ENCODER_PRESET": "ultrafast", "SYSTEM_STATUS_INTERVAL": "2", "VIDEO_WORKER_CHECK_INTERVAL": "2",
            "BOOKING_CHECK_INTERVAL": "1", "BOOKING_MISSED_AFTER_S": "60", "ALERT_HOLD_S": "5",
            "ALERT_DISK_FREE_GB": "0.02",
            "SUPABASE_URL": self.cloud.url, "SUPABASE_SERVICE_ROLE_KEY": KEY, "SUPABASE_JWT_SECRET": JWT_SECRET,
            "SUPABASE_RETRY_MIN_S": "0.5", "SUPABASE_RETRY_MAX_S": "4", "SUPABASE_STORAGE_TIMEOUT_S": "30",
            "BOOKINGS_POLL_INTERVAL_S": "5", "WORKER_LEASE_S": "10", "LOG_LEVEL": "INFO",
        }

    def start(self) -> None:
        self.disk.mount()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker.start()
        self.camera.start()
        self._pg = pg.find_or_start(self.work / "pg")
        self._dbname = f"ezrec_soak_{os.getpid()}"
        dsn = pg.create_database(self._pg, self._dbname)
        (self.work / "cloud").mkdir(exist_ok=True)
        self.cloud = FakeCloud(self.work / "cloud", dsn)
        self.cloud.start()
        self.start_up()

    def start_up(self) -> None:
        log = open(self.up_log, "a")  # noqa: SIM115 - the child holds it; closed with the stack
        self.up = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=self.work, env=self.env(),
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"the API did not come up; see {self.up_log}")

    def service_pids(self) -> dict[str, int]:
        """The four children of `ezrec up`, found under its own pid (never by name across the machine)."""
        pids: dict[str, int] = {}
        if self.up is None:
            return pids
        try:
            for child in psutil.Process(self.up.pid).children():
                try:
                    cmd = child.cmdline()
                except psutil.Error:
                    continue
                if len(cmd) >= 2 and cmd[-2] == "services.cli":
                    pids[cmd[-1]] = child.pid
        except psutil.Error:
            pass
        return pids

    def kill_service(self, name: str) -> int | None:
        pid = self.service_pids().get(name)
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(40)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()
        self.camera.kill()
        if getattr(self, "cloud", None) is not None:
            self.cloud.kill()
        self.broker.stop()
        if self._pg is not None:
            try:
                pg.drop_database(self._pg, self._dbname)
            finally:
                self._pg.stop()
        self.disk.umount()
