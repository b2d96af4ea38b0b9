"""What finishing a booking costs the worker, through the real recorder and worker, against the ffmpeg CLI.

Starts a private Mosquitto, `ezrec recorder` (synthetic 1080p30 camera) and `ezrec worker` as processes
on one DATA_DIR with the embedded store; the user has a 5 s 720p25 intro with audio and an alpha logo.
A short warm-up booking first (a venue's intro is prepared once per camera format, not per booking),
then each booking of --lengths in turn. Per booking:

  worker_cpu_s        the worker's CPU-seconds (utime+stime) from the booking's start to its video/uploaded
  recorder_cpu_s      the recorder's, over the same span
  ready_after_end_s   booking end_time -> video/uploaded
  worker_peak_rss_mb  largest worker RSS sampled (every 0.2 s) over the booking
  route, reasons      how the worker finished it (remux / transcode) and why
  disk_written_bytes  /proc/<pid>/io write_bytes of recorder + worker over the span, per recorded minute,
                      and its ratio to the finished video's size
  video_kept_as       `splice` (the remux join's head + hard links to the recording: docs/finishing.md
                      "Disk") or `file`
  peer_cpu_s          the ffmpeg CLI finishing the same footage (the booking's segments, kept by hard
                      link): intro scaled + padded + fps, the logo overlaid, one libx264 encode at the
                      delivered format's preset and rate control, the intro's audio then silence
  cpu_ratio           worker_cpu_s / peer_cpu_s (goal on the remux path: <= 0.1)

Then the quality of the recording part at equal file size (`quality`): the camera's source frames
(lavfi testsrc2, what the synthetic camera draws) encoded once with the capture's format (what the
remux path delivers), against the previous chain (capture ultrafast + a second encode sized to the same
file size): PSNR of each against the source (ffmpeg psnr filter).

    python bench/finish_cost.py [--lengths 120,600] [--keep DIR] [--out bench/results/finish_cost.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.time_to_video import Uploads  # noqa: E402
from bench.worker_vs_ffmpeg import FPS, INTRO_S, LOGO_FRACTION, MARGIN_FRACTION, H, W, even, make_media  # noqa: E402
from shared import spliced_file  # noqa: E402
from shared.bus import MqttBus  # noqa: E402
from shared.capture_stamp import read as read_stamp  # noqa: E402
from shared.models import BookingIn, UserSettings  # noqa: E402
from shared.schedule_cache import write_snapshot  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store import LocalStore  # noqa: E402
from shared.video_encode import EncodeSettings, default_bitrate  # noqa: E402
from shared.video_format import OutputFormat  # noqa: E402
from tests.broker import Broker  # noqa: E402

CAMERA = "bench"
WARMUP_S = 20
GOALS = {"cpu_ratio_remux": 0.1, "ready_after_end_s": 2.0, "worker_peak_rss_mb": 150, "disk_ratio": 1.2}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS of a process, and hard links to a booking's segments as they appear (the peer's input)."""

    def __init__(self, pid: int, segments_dir: Path, keep: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.segments_dir, self.keep = pid, segments_dir, keep
        self.peak = 0.0
        self.stop = threading.Event()
        keep.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self._tick()
        self._tick()

    def _tick(self) -> None:
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, rss_mb(self.pid))
        if self.segments_dir.is_dir():
            for seg in self.segments_dir.glob("seg-*.mp4"):
                kept = self.keep / seg.name
                if not kept.exists():
                    with contextlib.suppress(OSError):
                        os.link(seg, kept)


def peer_command(segments: list[Path], intro: Path, logo: Path | None, out: Path, fmt: OutputFormat | None,
                 listing: Path, seconds: float) -> list[str]:
    """The ffmpeg CLI doing the whole finishing in one graph, at the delivered format's encoder settings."""
    listing.write_text("".join(f"file '{p}'\n" for p in segments))
    enc = fmt.encode if fmt else EncodeSettings()
    rate = ["-crf", str(enc.crf)] if enc.crf is not None and not enc.bitrate else \
        ["-b:v", str(enc.bitrate or default_bitrate(W, H, FPS)), "-maxrate", str(enc.bitrate or 0),
         "-bufsize", str(2 * (enc.bitrate or 0))]
    lw, margin = even(LOGO_FRACTION * W), even(MARGIN_FRACTION * W)
    overlay = (f"[2:v]scale={lw}:-2[lg];[0:v][lg]overlay=W-w-{margin}:{margin}:format=yuv420,setsar=1,"
               if logo is not None else "[0:v]setsar=1,")
    logo_input = ["-i", str(logo)] if logo is not None else ["-f", "lavfi", "-i", "color=black:s=16x16:d=1"]
    graph = (f"[1:v]scale={W}:{H}:force_original_aspect_ratio=decrease,pad={W}:{H}:(ow-iw)/2:(oh-ih)/2:color=black,"
             f"setsar=1,fps={FPS},format=yuv420p[iv];[1:a]aresample=48000,atrim=0:{INTRO_S}[ia];"
             f"{overlay}fps={FPS}[mv];[3:a]atrim=0:{seconds}[ma];[iv][ia][mv][ma]concat=n=2:v=1:a=1[v][a]")
    return ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-i", str(intro),
            *logo_input, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-filter_complex", graph,
            "-map", "[v]", "-map", "[a]", "-c:v", enc.codec, "-preset", enc.preset, *rate,
            "-g", str(round(enc.gop_seconds * FPS)), "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
            str(out)]


def child_cpu(cmd: list[str]) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak RSS MB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    _, err = proc.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err.decode(errors='replace')[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def stamped_format(segment: Path) -> OutputFormat | None:
    import av

    with av.open(str(segment)) as c:
        fmt_json, _ = read_stamp(dict(c.metadata))
    return OutputFormat.from_json(fmt_json) if fmt_json else None


def job_facts(data: Path, booking_id: str) -> dict:
    db = sqlite3.connect(data / "state" / "worker-jobs.db")
    try:
        row = db.execute("SELECT mode, route, route_reasons FROM jobs WHERE booking_id = ?", (booking_id,)).fetchone()
        parts = db.execute("SELECT route, count(*) FROM parts WHERE booking_id = ? GROUP BY route",
                           (booking_id,)).fetchall()
    finally:
        db.close()
    return {"mode": row[0] if row else None, "route": row[1] if row else None,
            "reasons": json.loads(row[2]) if row and row[2] else [], "segments_by_route": dict(parts)}


def psnr(path: Path, reference: list[str]) -> float:
    out = subprocess.run(["ffmpeg", "-v", "info", "-nostdin", "-i", str(path), *reference, "-lavfi",
                          "[0:v][1:v]psnr", "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    return float(re.findall(r"average:([0-9.inf]+)", out)[-1])


def quality(work: Path, fmt: OutputFormat | None, seconds: int = 20) -> dict:
    """PSNR of the recording part against the camera's source frames, both paths at equal file size."""
    src = ["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={FPS},format=yuv420p", "-t", str(seconds)]
    enc = fmt.encode if fmt else EncodeSettings()
    rate = ["-crf", str(enc.crf)] if enc.crf is not None and not enc.bitrate else ["-b:v", str(enc.bitrate)]
    cap = getattr(enc, "maxrate", None)
    if cap:  # the capture's VBV cap on its constant quality
        rate += ["-maxrate", str(cap), "-bufsize", str(2 * cap)]
    once = work / "q-once.mp4"  # the remux path: the capture's one encode is the delivered video
    subprocess.run(["ffmpeg", "-v", "error", "-y", *src, "-c:v", enc.codec, "-preset", enc.preset, *rate,
                    "-g", str(round(enc.gop_seconds * FPS)), str(once)], check=True)
    size = once.stat().st_size
    capture = work / "q-capture.mp4"  # the old chain: capture ultrafast (the recorder's previous default) ...
    subprocess.run(["ffmpeg", "-v", "error", "-y", *src, "-c:v", "libx264", "-preset", "ultrafast", "-tune",
                    "zerolatency", "-g", str(FPS), "-bf", "0", str(capture)], check=True)
    twice = work / "q-twice.mp4"  # ... then the worker's transcode, two-pass to the same file size
    bitrate = int(size * 8 / seconds)
    for p in (1, 2):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(capture), "-c:v", enc.codec, "-preset", enc.preset,
                        "-b:v", str(bitrate), "-pass", str(p), "-passlogfile", str(work / "q-pass"),
                        "-g", str(round(enc.gop_seconds * FPS)), "-f", "mp4",
                        str(twice) if p == 2 else os.devnull], check=True, cwd=work)
    return {"seconds": seconds, "source": "lavfi testsrc2 1920x1080@30 (the synthetic camera's frames)",
            "remux_path": {"psnr_db": psnr(once, src), "bytes": size,
                           "encodes": f"1 ({enc.codec} {enc.preset} {' '.join(rate)})"},
            "transcode_path": {"psnr_db": psnr(twice, src), "bytes": twice.stat().st_size,
                               "encodes": f"2 (ultrafast capture, then {enc.preset} 2-pass {bitrate // 1000} kbit/s)"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="120,600", help="booking lengths in seconds, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep data and logs here")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--quality-only", type=Path, metavar="SEGMENT",
                        help="only the PSNR comparison, at the format stamped on this recorder segment")
    parser.add_argument("--no-logo", action="store_true", help="the user has an intro only (a recorder that does not "
                        "blend logos yet can still be finished by remux)")
    args = parser.parse_args()
    if args.quality_only:
        with tempfile.TemporaryDirectory(prefix="ezrec-quality-") as tmp:
            print(json.dumps(quality(Path(tmp), stamped_format(args.quality_only)), indent=2))
        return 0
    lengths = [int(x) for x in args.lengths.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="ezrec-finish-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = Broker(work / "mosquitto")
    broker.start()
    procs: dict[str, subprocess.Popen] = {}
    result: dict = {"bookings": [], "cpus": os.cpu_count(), "started": datetime.now(UTC).isoformat()}
    try:
        data = work / "data"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "CAMERA_", "DATA_", "WORKER_"))},
               "PYTHONPATH": str(ROOT), "DATA_DIR": str(data), "CAMERA_ID": CAMERA, "MQTT_PORT": str(broker.port),
               "CAMERA_SOURCE": "synthetic", "CAMERA_WIDTH": str(W), "CAMERA_HEIGHT": str(H), "CAMERA_FPS": str(FPS)}
        settings = Settings(_env_file=None, data_dir=data, camera_id=CAMERA, mqtt_port=broker.port)  # type: ignore[call-arg]
        settings.ensure_dirs()
        store = LocalStore(data)
        _, intro, logo = make_media(work, 1)
        store.put_object("media", "player/media/intro-bench.mp4", intro, "video/mp4")
        store.put_object("media", "player/media/logo-bench.png", logo, "image/png")
        store.put_user_settings(UserSettings(user_id="player", intro_video_path="player/media/intro-bench.mp4",
                                             logo_path=None if args.no_logo else "player/media/logo-bench.png"))
        result["user_media"] = "intro 5 s 720p25 + AAC" + ("" if args.no_logo else " + alpha logo")
        for name in ("recorder", "worker"):
            log = open(work / f"{name}.log", "w")  # noqa: SIM115 - closed by the child's exit
            procs[name] = subprocess.Popen([sys.executable, "-m", "services.cli", name], cwd=work, env=env,
                                           stdout=log, stderr=subprocess.STDOUT)
        uploads = Uploads(broker.port)
        api = MqttBus(settings, "api", client_id="bench-finish-api")
        api.start()
        time.sleep(3)
        plan = ([("warmup", WARMUP_S)] if not args.no_warmup else []) + [(f"fc-{n}s", n) for n in lengths]
        for booking_id, length in plan:
            row = _booking(booking_id, length, store, settings, api, uploads, procs, data, work, intro,
                           None if args.no_logo else logo)
            if booking_id != "warmup":
                result["bookings"].append(row)
            print(json.dumps(row), file=sys.stderr)
        api.stop()
        fmt = None
        kept = sorted((work / "kept").rglob("seg-*.mp4"))
        if kept:
            fmt = stamped_format(kept[0])
        result["delivered_format"] = fmt.to_json() if fmt else "unstamped (recorder copy or pre-issue-12 recorder)"
        result["quality"] = quality(work, fmt)
        result["goals"] = GOALS
        result["goals_met"] = {
            str(r["booking_s"]): {
                "cpu_ratio": r["route"] == "remux" and r["cpu_ratio"] <= GOALS["cpu_ratio_remux"],
                "ready_after_end_s": r["ready_after_end_s"] is not None and r["ready_after_end_s"] < 2.0,
                "worker_peak_rss_mb": r["worker_peak_rss_mb"] < 150,
                "disk_ratio": r["disk_ratio"] is not None and r["disk_ratio"] <= 1.2}
            for r in result["bookings"]}
        q = result["quality"]
        result["goals_met"]["psnr_remux_not_lower"] = q["remux_path"]["psnr_db"] >= q["transcode_path"]["psnr_db"]
        text = json.dumps(result, indent=2)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _booking(booking_id: str, length: int, store: LocalStore, settings: Settings, api: MqttBus, uploads: Uploads,
             procs: dict[str, subprocess.Popen], data: Path, work: Path, intro: Path, logo: Path | None) -> dict:
    start = (datetime.now(UTC) + timedelta(seconds=settings.camera_warmup_s + 6)).replace(microsecond=0)
    end = start + timedelta(seconds=length)
    store.create_bookings([BookingIn(id=booking_id, user_id="player", start_time=start, end_time=end)], CAMERA)
    api.publish(f"ezrec/{CAMERA}/bookings", write_snapshot(settings.bookings_cache_path, CAMERA,
                                                           store.list_bookings(camera_id=CAMERA)), retain=True)
    wpid, rpid = procs["worker"].pid, procs["recorder"].pid
    sampler = Sampler(wpid, settings.raw_dir / booking_id, work / "kept" / booking_id)
    time.sleep(max(0.0, start.timestamp() - time.time()))
    w0, r0, io0 = cpu_s(wpid), cpu_s(rpid), written(wpid) + written(rpid)
    sampler.start()
    uploaded = uploads.wait(booking_id, timeout=(end - datetime.now(UTC)).total_seconds() + 900)
    w1, r1, io1 = cpu_s(wpid), cpu_s(rpid), written(wpid) + written(rpid)
    sampler.stop.set()
    sampler.join()
    video = store.list_videos(booking_id=booking_id)
    size = video[0].size_bytes if video else None
    row: dict = {"booking_s": length, "ready_after_end_s": round(uploaded - end.timestamp(), 2) if uploaded else None,
                 "worker_cpu_s": round(w1 - w0, 2), "recorder_cpu_s": round(r1 - r0, 2),
                 "worker_peak_rss_mb": round(sampler.peak, 1), "video_bytes": size,
                 "video_duration_s": round(video[0].duration_seconds, 3) if video else None,
                 "disk_written_bytes": io1 - io0,
                 "disk_written_mb_per_recorded_min": round((io1 - io0) / 1e6 / (length / 60), 1),
                 "disk_ratio": round((io1 - io0) / size, 2) if size else None,
                 "load_avg": round(os.getloadavg()[0], 2)}
    stored = store.local_object_path("videos", video[0].storage_path) if video else None
    row["video_kept_as"] = None if stored is None else "splice" if spliced_file.is_splice(stored) else "file"
    row.update(job_facts(data, booking_id))
    if booking_id == "warmup":
        return row
    kept = sorted((work / "kept" / booking_id).glob("seg-*.mp4"))
    if kept:
        fmt = stamped_format(kept[0])
        cpu, wall, peak = child_cpu(peer_command(kept, intro, logo, work / f"peer-{booking_id}.mp4", fmt,
                                                 work / f"peer-{booking_id}.txt", length))
        row.update(peer_cpu_s=round(cpu, 2), peer_wall_s=round(wall, 2), peer_peak_rss_mb=round(peak, 1),
                   cpu_ratio=round((w1 - w0) / cpu, 3), peer_bytes=(work / f"peer-{booking_id}.mp4").stat().st_size)
        for seg in kept:
            seg.unlink()
    return row


if __name__ == "__main__":
    sys.exit(main())
