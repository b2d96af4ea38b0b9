"""How long after a booking ends its video is uploaded: real recorder + real worker, embedded store, 1080p30.

Starts a private Mosquitto (tests/broker.py), then `ezrec recorder` (synthetic 1080p30 camera) and
`ezrec worker` as processes with the product's defaults (veryfast, 10 s segments), on one DATA_DIR with
the embedded store; no API: bookings go into the store and the schedule is published the way the API
does. The user has an intro (5 s 720p25 with audio) and a logo. Each booking is recorded in turn;
`ready_after_end_s` runs from the booking's end_time to the arrival of its `video/uploaded` event.
Prints a JSON list of {booking_s, ready_after_end_s, ...}.

    python bench/time_to_video.py [--lengths 120,600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_vs_ffmpeg import make_media  # noqa: E402
from shared.bus import MqttBus  # noqa: E402
from shared.models import BookingIn, UserSettings  # noqa: E402
from shared.schedule_cache import write_snapshot  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store import LocalStore  # noqa: E402
from tests.broker import Broker  # noqa: E402

CAMERA = "bench"
GOAL_S = 5.0


class Uploads:
    """Arrival time of each booking's video/uploaded event."""

    def __init__(self, port: int) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(f"ezrec/{CAMERA}/video/uploaded", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        booking = json.loads(msg.payload)["booking_id"]
        with self.cond:
            self.at.setdefault(booking, time.time())
            self.cond.notify_all()

    def wait(self, booking: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: booking in self.at, timeout)
            return self.at.get(booking)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="120,600", help="booking lengths in seconds, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep data and logs here")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="ezrec-ttv-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = Broker(work / "mosquitto")
    broker.start()
    procs: list[subprocess.Popen] = []
    try:
        data = work / "data"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "CAMERA_", "DATA_", "WORKER_"))},
               "PYTHONPATH": str(ROOT), "DATA_DIR": str(data), "CAMERA_ID": CAMERA, "MQTT_PORT": str(broker.port),
               "CAMERA_SOURCE": "synthetic", "CAMERA_WIDTH": "1920", "CAMERA_HEIGHT": "1080", "CAMERA_FPS": "30"}
        settings = Settings(_env_file=None, data_dir=data, camera_id=CAMERA, mqtt_port=broker.port)  # type: ignore[call-arg]
        settings.ensure_dirs()
        store = LocalStore(data)
        _, intro, logo = make_media(work, 1)
        store.put_object("media", "player/media/intro-bench.mp4", intro, "video/mp4")
        store.put_object("media", "player/media/logo-bench.png", logo, "image/png")
        store.put_user_settings(UserSettings(user_id="player", intro_video_path="player/media/intro-bench.mp4",
                                             logo_path="player/media/logo-bench.png"))
        for name in ("recorder", "worker"):
            log = open(work / f"{name}.log", "w")  # noqa: SIM115 - closed by the child's exit
            procs.append(subprocess.Popen([sys.executable, "-m", "services.cli", name], cwd=work, env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
        uploads = Uploads(broker.port)
        api = MqttBus(settings, "api", client_id="bench-api")
        api.start()
        time.sleep(3)  # services connected
        results = []
        for i, length in enumerate(lengths):
            booking_id = f"ttv{i}-{length}s"
            start = (datetime.now(UTC) + timedelta(seconds=settings.camera_warmup_s + 6)).replace(microsecond=0)
            end = start + timedelta(seconds=length)
            store.create_bookings([BookingIn(id=booking_id, user_id="player", start_time=start, end_time=end)],
                                  CAMERA)
            api.publish(f"ezrec/{CAMERA}/bookings", write_snapshot(settings.bookings_cache_path, CAMERA,
                                                                   store.list_bookings(camera_id=CAMERA)),
                        retain=True)
            load_start = os.getloadavg()[0]
            uploaded = uploads.wait(booking_id, timeout=(end - datetime.now(UTC)).total_seconds() + 600)
            load_end = os.getloadavg()[0]
            row = {"booking_s": length,
                   "ready_after_end_s": round(uploaded - end.timestamp(), 2) if uploaded else None,
                   "load_avg_start_end": [round(load_start, 2), round(load_end, 2)]}
            row.update(_job_facts(data, booking_id))
            video = store.list_videos(booking_id=booking_id)
            row["video_duration_s"] = round(video[0].duration_seconds, 3) if video else None
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        for row in results:
            row["goal_met"] = row["ready_after_end_s"] is not None and row["ready_after_end_s"] < GOAL_S
        print(json.dumps(results, indent=2))
        api.stop()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _job_facts(data: Path, booking_id: str) -> dict:
    """How the worker made the video: from segments (`parts`) or from the whole recording."""
    db = sqlite3.connect(data / "state" / "worker-jobs.db")
    try:
        mode = db.execute("SELECT mode FROM jobs WHERE booking_id = ?", (booking_id,)).fetchone()
        parts = db.execute("SELECT count(*) FROM parts WHERE booking_id = ?", (booking_id,)).fetchone()
    finally:
        db.close()
    return {"mode": mode[0] if mode else None, "segments": parts[0] if parts else 0}


if __name__ == "__main__":
    sys.exit(main())
