"""How exactly the recorder cuts: first/last frame capture times against the bookings' start/end.

Runs the real `ezrec recorder` process (private Mosquitto, synthetic camera at 1080p30 by default)
through N short bookings written to the bookings cache as the API would, waits for each
`recording/finished`, then reads every recorded file's frame capture times back from the file
(its `ezrec_first_capture` stamp plus the frame timestamps) and prints one JSON object:

  start_error_ms_*  |first frame's capture time - start_time|
  end_error_ms_*    |last frame's capture time - end_time| (a perfect cut is one frame period, 33 ms at 30 fps,
                    since the booking is half-open [start, end))
  end_slot_error_ms_*  |last frame's capture time + one frame period - end_time| (0 for a perfect cut)
  frames_missing    frames expected from the bookings minus frames recorded (dropped under load)

The synthetic camera stamps frames on the epoch-aligned 1/fps grid, so with bookings on whole
seconds a perfect recorder scores 0 ms at the start; --unaligned starts bookings at random
milliseconds, where the first frame can only come up to one frame period after the start.

Goal: start and end within 50 ms at p99. p99 is nearest-rank (with 20 bookings: the worst one).

    python bench/recorder_timing.py [--bookings 20] [--seconds 2] [--gap 0] [--width 1920 --height 1080 --fps 30]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shared.models import BookingIn  # noqa: E402
from shared.recordings.timeline import capture_times  # noqa: E402
from shared.schedule_cache import write_snapshot  # noqa: E402
from shared.store import LocalStore  # noqa: E402
from shared.timeutil import utc_now  # noqa: E402
from tests.broker import Broker  # noqa: E402

GOAL_MS = 50.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Finished:
    def __init__(self, port: int, topic: str) -> None:
        self.ids: set[str] = set()
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.ids.add(json.loads(msg.payload)["booking_id"])
            self.cond.notify_all()

    def wait_all(self, ids: set[str], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: ids <= self.ids, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each booking")
    parser.add_argument("--gap", type=float, default=0.0, help="pause between bookings (0 = back to back)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--unaligned", action="store_true",
                        help="start bookings at random milliseconds, off the camera's frame grid")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ezrec-bench-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "mosquitto")
        broker.start()
        data = workdir / "data"
        camera_id = "bench"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_"))},
            "PYTHONPATH": str(ROOT), "DATA_DIR": str(data), "CAMERA_ID": camera_id,
            "MQTT_PORT": str(broker.port), "CAMERA_SOURCE": "synthetic", "CAMERA_WIDTH": str(args.width),
            "CAMERA_HEIGHT": str(args.height), "CAMERA_FPS": str(args.fps), "CAMERA_WARMUP_S": str(args.warmup),
            "LOG_LEVEL": "WARNING",
        }
        finished = Finished(broker.port, f"ezrec/{camera_id}/recording/finished")
        log = open(workdir / "recorder.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "recorder"], cwd=workdir, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            store = LocalStore(data)
            first = (utc_now() + timedelta(seconds=args.warmup + 3)).replace(microsecond=0)
            length, step = timedelta(seconds=args.seconds), timedelta(seconds=args.seconds + args.gap)
            rng = random.Random(7)
            shifts = [timedelta(milliseconds=rng.randrange(1000) if args.unaligned else 0)
                      for _ in range(args.bookings)]
            starts = [first + i * (step + timedelta(seconds=1 if args.unaligned else 0)) + shifts[i]
                      for i in range(args.bookings)]
            bookings = [(f"b{i:03d}", s, s + length) for i, s in enumerate(starts)]
            store.create_bookings([BookingIn(id=b, user_id="bench", start_time=s, end_time=e)
                                   for b, s, e in bookings], camera_id)
            write_snapshot(data / "bookings.json", camera_id, store.list_bookings())
            total = (bookings[-1][2] - utc_now()).total_seconds()
            ok = finished.wait_all({b for b, _, _ in bookings}, timeout=total + 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            finished.close()
            broker.stop()
            log.close()
        if not ok:
            print(json.dumps({"error": "not every booking finished",
                              "log": (workdir / "recorder.log").read_text()[-2000:]}))
            return 1

        period = timedelta(seconds=1 / args.fps)
        start_err, end_err, slot_err, missing = [], [], [], 0
        for booking_id, start, end in bookings:
            times = capture_times(data / "recordings" / "raw" / f"{booking_id}.mp4")
            start_err.append(abs((times[0] - start).total_seconds()) * 1000)
            end_err.append(abs((times[-1] - end).total_seconds()) * 1000)
            slot_err.append(abs((times[-1] + period - end).total_seconds()) * 1000)
            missing += round(args.seconds * args.fps) - len(times)

    result = {
        "bookings": args.bookings,
        "booking_seconds": args.seconds,
        "gap_seconds": args.gap,
        "unaligned": args.unaligned,
        "camera": f"synthetic {args.width}x{args.height}@{args.fps}",
        "start_error_ms_p50": round(percentile(start_err, 50), 2),
        "start_error_ms_p99": round(percentile(start_err, 99), 2),
        "end_error_ms_p50": round(percentile(end_err, 50), 2),
        "end_error_ms_p99": round(percentile(end_err, 99), 2),
        "end_slot_error_ms_p50": round(percentile(slot_err, 50), 2),
        "end_slot_error_ms_p99": round(percentile(slot_err, 99), 2),
        "frames_missing": missing,
        "goal_ms": GOAL_MS,
        "within_goal": max(percentile(start_err, 99), percentile(end_err, 99)) <= GOAL_MS,
        "cpu_count": os.cpu_count(),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
