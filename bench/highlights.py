"""Highlights: press -> `highlight/created`, the worker's CPU per clip, and what a 1 s keyframe interval costs.

Part 1 (a court): the real `ezrec recorder` and `ezrec worker` processes (private Mosquitto, embedded store,
synthetic camera at 1080p30 by default) record one booking while a client presses over MQTT; the worker also makes
the booking's own video meanwhile, as on a court. For each clip it reports:
  latency_after_end_s  arrival of `highlight/created` minus the clip's end (goal < 3 s)
  press_to_created_s   arrival of `highlight/created` minus the press
  worker_cpu_s         the worker's CPU time for the clip (its thread: cut, store), from the event (goal < 0.1 s)
and, side by side, the ffmpeg CLI cutting the same span from the joined recording by stream copy (`-c copy`,
its user+sys CPU time), as a peer.

Part 2 (GOP cost): the same 1080p30 content encoded as the recorder encodes it (libx264 ultrafast, zerolatency,
no B-frames, CRF 23 and a fixed 8 Mbit/s) with a keyframe every 1 s (the recorder's GOP: a clip starts within 1 s
of the asked start) and every 2 s: bitrate at CRF, and PSNR at the fixed bitrate, for a clean test pattern and
the same with sensor-like noise.

    python bench/highlights.py [--booking-s 50] [--width 1920 --height 1080 --fps 30] [--gop-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import av
import paho.mqtt.client as mqtt
from av.video.frame import PictureType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from services.recorder.writer import EncodeSpec  # noqa: E402
from shared.models import BookingIn  # noqa: E402
from shared.schedule_cache import write_snapshot  # noqa: E402
from shared.store import LocalStore  # noqa: E402
from shared.timeutil import utc_now  # noqa: E402
from tests.broker import Broker  # noqa: E402

LATENCY_GOAL_S = 3.0
CPU_GOAL_S = 0.1


class Events:
    """Every message under ezrec/<camera>/, with the time it arrived here."""

    def __init__(self, port: int, camera: str) -> None:
        self.messages: list[tuple[float, str, dict]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(f"ezrec/{camera}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        with self.cond:
            self.messages.append((time.time(), msg.topic, data))
            self.cond.notify_all()

    def of(self, suffix: str) -> list[tuple[float, dict]]:
        with self.cond:
            return [(at, d) for at, t, d in self.messages if t.endswith(suffix)]

    def wait(self, predicate, timeout: float) -> bool:  # noqa: ANN001
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def ffmpeg_copy_cpu(src: Path, start_s: float, length_s: float, out: Path) -> float:
    """user+sys CPU seconds of `ffmpeg -ss START -i SRC -t LEN -c copy` (the CLI's cut by stream copy)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{start_s:.3f}", "-i", str(src), "-t", f"{length_s:.3f}",
                    "-c", "copy", "-movflags", "+faststart", str(out)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def court(args: argparse.Namespace, workdir: Path) -> dict:
    broker = Broker(workdir / "mosquitto")
    broker.start()
    data = workdir / "data"
    camera = "bench"
    mine = ("MQTT_", "API_", "CAMERA_", "DATA_", "HIGHLIGHT_")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(mine)},
        "PYTHONPATH": str(ROOT), "DATA_DIR": str(data), "CAMERA_ID": camera, "MQTT_PORT": str(broker.port),
        "CAMERA_SOURCE": "synthetic", "CAMERA_WIDTH": str(args.width), "CAMERA_HEIGHT": str(args.height),
        "CAMERA_FPS": str(args.fps), "CAMERA_BITRATE": str(args.bitrate), "CAMERA_WARMUP_S": "2",
        "LOG_LEVEL": "WARNING", "VIDEO_WORKER_CHECK_INTERVAL": "2",
    }
    events = Events(broker.port, camera)
    procs, logs = [], []
    for service in ("recorder", "worker"):
        log = open(workdir / f"{service}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "services.cli", service], cwd=workdir, env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    presses_at: list[float] = []
    try:
        store = LocalStore(data)
        start = (utc_now() + timedelta(seconds=8)).replace(microsecond=0)
        end = start + timedelta(seconds=args.booking_s)
        store.create_bookings([BookingIn(id="bench1", user_id="bench", start_time=start, end_time=end)], camera)
        write_snapshot(data / "bookings.json", camera, store.list_bookings())
        # Presses 7 s apart from 34 s (each after the last clip's end: 30 s before, 3 s after), before the end.
        offsets = [o for o in range(34, int(args.booking_s) - 3, 7)]
        for offset in offsets:
            time.sleep(max(0.0, start.timestamp() + offset - time.time()))
            presses_at.append(time.time())
            events.publish(f"ezrec/{camera}/highlight/request", b"")
        events.wait(lambda: len([m for m in events.messages if m[1].endswith("/highlight/created")]) >= len(offsets),
                    timeout=60)
        events.wait(lambda: any(m[1].endswith("/recording/finished") for m in events.messages), timeout=60)
        raw = data / "recordings" / "raw" / "bench1.mp4"
        deadline = time.time() + 30
        while not raw.exists() and time.time() < deadline:
            time.sleep(0.2)
        # the worker removes the joined recording once the booking's video is uploaded: keep a link for the peer
        peer_src = workdir / "recording.mp4"
        if raw.exists():
            os.link(raw, peer_src)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        events.close()
        broker.stop()
        for log in logs:
            log.close()

    created = events.of("/highlight/created")
    clips = {d["clip_id"]: d for _, d in events.of("/highlight/clip")}
    finished = [d for _, d in events.of("/recording/finished")]
    rows = []
    for (arrived, event), pressed in zip(created, presses_at, strict=False):
        clip = clips[event["clip_id"]]
        row = {"clip_id": event["clip_id"], "asked_s": round(_ts(clip["end_at"]) - _ts(clip["start_at"]), 3),
               "duration_s": event["duration_s"], "copied": event["copied"],
               "latency_after_end_s": round(arrived - _ts(clip["end_at"]), 3),
               "press_to_created_s": round(arrived - pressed, 3), "worker_cpu_s": event["cpu_s"],
               "size_mb": round(event["size_bytes"] / 1e6, 2)}
        if finished and peer_src.exists():
            first = _ts(finished[0]["first_frame_at"])
            row["ffmpeg_copy_cpu_s"] = round(ffmpeg_copy_cpu(peer_src, _ts(event["start_at"]) - first,
                                                             event["duration_s"], workdir / "peer.mp4"), 4)
        rows.append(row)
    if len(rows) < len(presses_at):
        return {"error": f"{len(rows)} of {len(presses_at)} clips made",
                "worker_log": (workdir / "worker.log").read_text()[-3000:]}
    latencies = [r["latency_after_end_s"] for r in rows]
    cpus = [r["worker_cpu_s"] for r in rows]
    peers = [r["ffmpeg_copy_cpu_s"] for r in rows if "ffmpeg_copy_cpu_s" in r]
    return {
        "camera": f"synthetic {args.width}x{args.height}@{args.fps}", "booking_s": args.booking_s,
        "camera_bitrate": args.bitrate or "CRF 23",
        "clips": rows,
        "latency_after_end_s_max": max(latencies), "latency_after_end_s_median": statistics.median(latencies),
        "latency_goal_s": LATENCY_GOAL_S, "latency_within_goal": max(latencies) < LATENCY_GOAL_S,
        "worker_cpu_s_max": max(cpus), "worker_cpu_s_median": statistics.median(cpus),
        "ffmpeg_copy_cpu_s_median": statistics.median(peers) if peers else None,
        "cpu_goal_s": CPU_GOAL_S, "cpu_within_goal": max(cpus) < CPU_GOAL_S,
        "recording_frames": finished[0]["frames"] if finished else None,
        "recording_frames_expected": round(args.booking_s * args.fps),
    }


# ---- GOP cost ---------------------------------------------------------------------------------------


def _encode(reference: Path, fps: int, gop_s: float, path: Path, bitrate: int = 0) -> float:
    """The reference, decoded frame by frame (never held in memory), encoded with the recorder's settings."""
    frames = 0
    with av.open(str(reference)) as src, av.open(str(path), "w") as out:
        stream = None
        for frame in src.decode(video=0):
            if stream is None:
                spec = EncodeSpec(frame.width, frame.height, fps, bitrate)
                options = {**spec.options(), "g": str(round(gop_s * fps))}
                if not bitrate:
                    options["crf"] = "23"
                stream = out.add_stream("libx264", rate=fps, options=options)
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                if bitrate:
                    stream.bit_rate = bitrate
            frame.pts = frames
            frame.pict_type = PictureType.NONE  # decoded raw frames say I: libx264 would obey (an all-intra stream)
            frames += 1
            out.mux(stream.encode(frame))
        assert stream is not None
        out.mux(stream.encode(None))
    return path.stat().st_size * 8 / (frames / fps)


def _psnr(reference: Path, encoded: Path) -> float:
    out = subprocess.run(["ffmpeg", "-v", "info", "-i", str(encoded), "-i", str(reference), "-lavfi", "psnr", "-f",
                          "null", "-"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"average:([0-9.]+|inf)", out)
    return float(match.group(1)) if match else float("nan")


def gop_cost(args: argparse.Namespace, workdir: Path) -> dict:
    results = {}
    size = f"{args.width}x{args.height}"
    sources = {"testsrc2": f"testsrc2=size={size}:rate={args.fps}",
               "testsrc2+noise": f"testsrc2=size={size}:rate={args.fps},noise=alls=10:allf=t"}
    for name, graph in sources.items():
        reference = workdir / f"{name}.y4m"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", graph, "-t", str(args.gop_seconds),
                        "-pix_fmt", "yuv420p", str(reference)], check=True)
        row: dict[str, float] = {}
        for gop in (1.0, 2.0):
            row[f"crf23_mbps_gop{gop:g}s"] = round(_encode(reference, args.fps, gop, workdir / "crf.mp4") / 1e6, 3)
            fixed = workdir / f"fixed{gop:g}.mp4"
            _encode(reference, args.fps, gop, fixed, bitrate=8_000_000)
            row[f"psnr_db_8mbps_gop{gop:g}s"] = round(_psnr(reference, fixed), 2)
        row["bitrate_cost_pct_1s_vs_2s"] = round(100 * (row["crf23_mbps_gop1s"] / row["crf23_mbps_gop2s"] - 1), 1)
        row["psnr_cost_db_1s_vs_2s"] = round(row["psnr_db_8mbps_gop2s"] - row["psnr_db_8mbps_gop1s"], 2)
        results[name] = row
        reference.unlink()
    return {"encoder": "libx264 ultrafast zerolatency bf=0 (the recorder's EncodeSpec)", "seconds": args.gop_seconds,
            "size": size, "fps": args.fps, "by_source": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--booking-s", type=float, default=50.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop-seconds", type=float, default=20.0, help="length of the GOP-cost encodes")
    parser.add_argument("--bitrate", type=int, default=0, help="CAMERA_BITRATE for the court (0: CRF 23)")
    parser.add_argument("--skip-court", action="store_true")
    parser.add_argument("--skip-gop", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ezrec-bench-hl-") as tmp:
        workdir = Path(tmp)
        made = None if args.skip_court else court(args, workdir)
        print(json.dumps({"court": made}), file=sys.stderr)  # kept even if the GOP part fails
        result = {"court": made, "gop": None if args.skip_gop else gop_cost(args, workdir), "cpu_count": os.cpu_count(),
                  "load_1m_after": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))
    return 0 if result["court"] is None or "error" not in result["court"] else 1


if __name__ == "__main__":
    sys.exit(main())
