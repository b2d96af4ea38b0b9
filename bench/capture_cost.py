"""What the recorder's one encode costs and delivers at 1080p30: CPU, file size, quality; logos on and off.

The recorder's own capture path (services/recorder/writer.SegmentWriter: blend the booking's logos,
encode with the capture settings, mux fragmented MP4 segments of SEGMENT_SECONDS, fsync each) is fed
frames of two lavfi sources, in capture order with capture timestamps:

  testsrc2   FFmpeg's moving test card: sharp, saturated, hard to compress (a worst case)
  court      a more natural scene: a smooth green gradient drifting slowly, sensor noise on every
             frame, two players (boxes) crossing it

For each capture setting (the defaults and alternatives) it reports:

  cpu_s_per_recorded_s  process CPU seconds (all threads) per recorded second, the source's own cost
                        (generating the same frames without recording them, measured separately) taken off
  mb_per_hour           file size of the segments per recorded hour
  psnr_y / psnr_yuv     of the decoded recording against the source frames (yuv: 4:1:1 weighted mean of
                        per-plane MSEs), computed on the fly (sources are deterministic, so regenerated)

plus, for the defaults, the same with the four logos of a booking blended (`logo_overhead`: goal < 5 %
more CPU; measured in --repeat interleaved on/off pairs on frames the recorder owns, median and spread
reported, with the machine's load averages, see logo_pairs), the ffmpeg CLI encoding the same source
with the same x264 options (the peer, same run), and the capture held to a Pi-sized CPU quota (cgroup v1
cpu.cfs_quota_us, needs root): 0.25 of one core here is about one Raspberry Pi 5 core (libx264 veryfast
at 1080p: ~56 fps per core here, ~53 fps on a whole 4-core Pi 5). Under the quota the recorder is fed
pre-generated frames as fast as it takes them: `fps` >= 30 means it keeps up with a 1080p30 camera on
one Pi 5 core.

    python bench/capture_cost.py [--seconds 20] [--repeat 5] [--quota-seconds 10] [--no-quota]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.blend_cost import soft_logo  # noqa: E402
from services.recorder import writer as writer_module  # noqa: E402
from services.recorder.camera import CapturedFrame  # noqa: E402
from services.recorder.logos import BookingLogos, Geometry  # noqa: E402
from services.recorder.writer import CAPTURE_ENCODE, EncodeSpec, SegmentWriter  # noqa: E402
from shared.logo_layout import booking_logos  # noqa: E402
from shared.overlay import FramePool, blend_logos  # noqa: E402
from shared.video_encode import EncodeSettings  # noqa: E402

W, H, FPS = 1920, 1080, 30
SEGMENT_S = 10
T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
SOURCES = {
    "testsrc2": f"testsrc2=size={W}x{H}:rate={FPS},format=yuv420p",
    "court": (f"gradients=s={W}x{H}:r={FPS}:speed=0.01:c0=0x3a7d44:c1=0x1f4e2a:c2=0x6d8f5a:nb_colors=3:seed=1,"
              "format=yuv420p,noise=alls=5:allf=t:all_seed=7,"
              "drawbox=x='mod(t*240,1800)':y=420:w=80:h=200:c=white@1:t=fill,"
              "drawbox=x='1700-mod(t*180,1600)':y=600:w=70:h=180:c=0xd02020@1:t=fill"),
}
ALTERNATIVES = {
    "default (ultrafast crf26 max8M)": CAPTURE_ENCODE,
    "ultrafast crf23 max8M": replace(CAPTURE_ENCODE, crf=23),
    "superfast crf26 max8M": replace(CAPTURE_ENCODE, preset="superfast"),
    "veryfast crf26 max8M": replace(CAPTURE_ENCODE, preset="veryfast"),
}
PI5_CORE = 0.25
REPEAT = 5
"""Logos-on/off pairs per source (--repeat): the difference is a few percent, a shared machine's noise more."""
GOAL_LOGO_OVERHEAD = 0.05


def frames(graph: str, count: int) -> Iterator[av.VideoFrame]:
    with av.open(graph, format="lavfi") as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i == count:
                return
            frame.pts = None
            yield frame


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def source_cpu(graph: str, count: int) -> float:
    t0 = cpu()
    for _ in frames(graph, count):
        pass
    return cpu() - t0


def owned_frames(pool: list[av.VideoFrame], count: int) -> Iterator[av.VideoFrame]:
    """`count` frames cycled from `pool`, each a copy into a recycled frame the recorder owns (writable, as a
    V4L2 camera's converted frames are): the pool stays pristine, and generating them costs one memcpy."""
    copies = FramePool(W, H, "yuv420p", size=4)
    for i in range(count):
        yield copies.copy(pool[i % len(pool)])


def source_cpu_owned(pool: list[av.VideoFrame], count: int) -> float:
    t0 = cpu()
    for _ in owned_frames(pool, count):
        pass
    return cpu() - t0


def record(graph: str, count: int, out: Path, settings: EncodeSettings, logos: BookingLogos | None,
           source: Iterator[av.VideoFrame] | None = None) -> float:
    """CPU seconds to generate (or take from `source`) and record `count` frames into SEGMENT_S segments."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = cpu()
    writer: SegmentWriter | None = None
    spec = EncodeSpec(W, H, FPS, settings, logos=logos)
    for i, frame in enumerate(frames(graph, count) if source is None else source):
        if i % (SEGMENT_S * FPS) == 0:
            if writer is not None:
                writer.close()
            writer = SegmentWriter(out / f"seg-{i // (SEGMENT_S * FPS):05d}.mp4", T0, encode=spec)
        writer.write(CapturedFrame(frame, T0 + timedelta(seconds=i / FPS)))  # type: ignore[union-attr]
    if writer is not None:
        writer.close()
    return cpu() - t0


def psnr(graph: str, count: int, out: Path) -> tuple[float, float]:
    """PSNR (Y, YUV) of the recording in `out` against the regenerated source frames."""
    sse = np.zeros(3)
    pixels = np.array([W * H, W * H / 4, W * H / 4])
    n = 0
    source = frames(graph, count)
    for seg in sorted(out.glob("seg-*.mp4")):
        with av.open(str(seg)) as c:
            for decoded in c.decode(video=0):
                ref = next(source)
                for p, (a, b) in enumerate(zip(decoded.planes, ref.planes, strict=True)):
                    aa = np.frombuffer(a, np.uint8).reshape(a.height, a.line_size)[:, : a.width]
                    bb = np.frombuffer(b, np.uint8).reshape(b.height, b.line_size)[:, : b.width]
                    sse[p] += float(np.sum((aa.astype(np.int32) - bb) ** 2))
                n += 1
    if n != count:
        raise RuntimeError(f"{out}: {n} frames decoded, {count} recorded")
    mse = sse / (pixels * n)
    to_db = lambda m: 10 * np.log10(255**2 / m) if m > 0 else 99.0  # noqa: E731
    return round(float(to_db(mse[0])), 2), round(float(to_db((4 * mse[0] + mse[1] + mse[2]) / 6)), 2)


def size_mb_per_hour(out: Path, count: int) -> float:
    size = sum(p.stat().st_size for p in out.glob("seg-*.mp4"))
    return round(size / 1e6 * 3600 / (count / FPS), 1)


def ffmpeg_cpu(graph: str, count: int, settings: EncodeSettings, out: Path) -> float:
    """The ffmpeg CLI encoding the same frames with the same x264 options: utime+stime (-benchmark)."""
    gop = round(settings.gop_seconds * FPS)
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-y", "-f", "lavfi", "-i", graph,
            "-frames:v", str(count), "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf),
            "-g", str(gop), "-threads", str(os.cpu_count() or 1)]
    if settings.maxrate:
        args += ["-maxrate", str(settings.maxrate), "-bufsize", str(2 * settings.maxrate)]
    args += ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(out)]
    err = subprocess.run(args, capture_output=True, text=True, check=True).stderr
    m = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s", err)
    assert m is not None, err[-400:]
    return float(m[1]) + float(m[2])


def ffmpeg_source_cpu(graph: str, count: int) -> float:
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-f", "lavfi", "-i", graph,
                          "-frames:v", str(count), "-f", "null", "-"], capture_output=True, text=True,
                         check=True).stderr
    m = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s", err)
    assert m is not None, err[-400:]
    return float(m[1]) + float(m[2])


class BlendClock:
    """CPU time spent in the writer's blend_logos calls: the recorder's own share of the logo overhead.

    The rest of `logo_overhead` is the encoder coding a different picture (sharp logo edges; on a noisy
    scene near the quantiser's threshold, x264 ultrafast's rate control may also code more of the noise).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._inner = writer_module.blend_logos

    def __enter__(self) -> BlendClock:
        def timed(frame: av.VideoFrame, logos: list) -> None:  # type: ignore[type-arg]
            t0 = time.thread_time()  # this thread only: the encoder's own threads run meanwhile
            self._inner(frame, logos)
            self.seconds += time.thread_time() - t0
            self.calls += 1

        writer_module.blend_logos = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        writer_module.blend_logos = self._inner


def make_logos(d: Path) -> BookingLogos:
    files = [soft_logo(d / "user.png", (600, 220), (230, 30, 40)),
             soft_logo(d / "sponsor1.png", (500, 250), (20, 90, 220)),
             soft_logo(d / "sponsor2.png", (400, 400), (250, 200, 20)),
             soft_logo(d / "sponsor3.png", (640, 160), (255, 255, 255))]
    return BookingLogos("bench", booking_logos(files))


# ---- under a Pi-sized CPU quota -------------------------------------------------------------------


def child(seconds: float, with_logos: bool, preset: str) -> None:
    """Runs inside the quota: pre-generated frames (30 distinct, cycled) fed as fast as the recorder takes them."""
    pool = list(frames(SOURCES["court"], FPS))
    with tempfile.TemporaryDirectory() as tmp:
        logos = make_logos(Path(tmp)) if with_logos else None
        settings = replace(CAPTURE_ENCODE, preset=preset)
        print("ready", flush=True)
        sys.stdin.readline()  # the parent has moved us into the cgroup
        count = int(seconds * FPS)
        t0, c0 = time.monotonic(), cpu()
        writer: SegmentWriter | None = None
        for i in range(count):
            if i % (SEGMENT_S * FPS) == 0:
                if writer is not None:
                    writer.close()
                writer = SegmentWriter(Path(tmp) / f"seg-{i:06d}.mp4", T0,
                                       encode=EncodeSpec(W, H, FPS, settings, logos=logos))
            frame = pool[i % len(pool)]
            writer.write(CapturedFrame(frame, T0 + timedelta(seconds=i / FPS)))  # type: ignore[union-attr]
        if writer is not None:
            writer.close()
        wall, used = time.monotonic() - t0, cpu() - c0
    print(json.dumps({"fps": round(count / wall, 1), "cpu_s_per_recorded_s": round(used / (count / FPS), 3),
                      "keeps_up_at_30fps": count / wall >= FPS}), flush=True)


def under_quota(quota: float, seconds: float, with_logos: bool, preset: str) -> dict[str, object]:
    group = Path("/sys/fs/cgroup/cpu") / f"ezrec-bench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(100000 * quota)))
        # A busy machine must not starve the group below its quota (that would measure the neighbours):
        # a high weight gets it its share first, the quota still caps it.
        (group / "cpu.shares").write_text("16384")
        args = [sys.executable, __file__, "--child", str(seconds), "--preset", preset]
        if with_logos:
            args.append("--logos")
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("quota child did not start")
        (group / "cgroup.procs").write_text(str(proc.pid))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
        return {"quota_cores": quota, "preset": preset, "logos": with_logos, **result}
    finally:
        group.rmdir()


def pi_quota(seconds: float) -> object:
    if os.geteuid() != 0 or not Path("/sys/fs/cgroup/cpu").is_dir():
        return "skipped: needs root and the cgroup v1 cpu controller"
    return [under_quota(PI5_CORE, seconds, logos_on, preset)
            for preset in ("ultrafast", "superfast") for logos_on in (False, True)]


def spread(values: list[float]) -> dict[str, float]:
    """Median, extremes and interquartile range of repeated measurements."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "iqr": round(q[2] - q[0], 4)}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def copy_ms(graph: str, count: int) -> float:
    """CPU ms per frame of make_writable on the source's frames: lavfi's are shared (not writable), so the
    writer copies each whole frame before drawing on it; a camera's converted frames and Picamera2's
    buffer are not copied."""
    spent, n = 0.0, 0
    for frame in frames(graph, min(count, 150)):
        t0 = time.thread_time()
        frame.make_writable()
        spent += time.thread_time() - t0
        n += 1
    return spent * 1000 / max(1, n)


def interleaved_pairs(pool: list[av.VideoFrame], count: int, repeat: int,
                      run: Callable[[int, bool], float]) -> tuple[list[float], list[float], list[list[float]]]:
    """`repeat` pairs of `run(k, on)` (CPU seconds), alternating which side goes first so a neighbour's burst or a
    CPU frequency drift falls on both alike; the cost of making the owned frames, measured before each pair, is
    taken off both. Returns CPU-s per recorded second on, off, and the load averages around the pairs."""
    recorded_s = count / FPS
    on_runs: list[float] = []
    off_runs: list[float] = []
    loads = [load()]
    for k in range(repeat):
        base = source_cpu_owned(pool, count)
        for on in ((True, False) if k % 2 == 0 else (False, True)):
            (on_runs if on else off_runs).append((run(k, on) - base) / recorded_s)
        loads.append(load())
    return on_runs, off_runs, loads


def logo_pairs(graph: str, count: int, d: Path, name: str, logos: BookingLogos, repeat: int) -> dict[str, object]:
    """Logos on and off, `repeat` interleaved pairs (alternating which goes first, so a neighbour's burst or
    a CPU frequency drift falls on both sides alike); each pair gives one overhead ratio; medians and spread
    are reported.

    The frames are the source's first second, pre-generated and cycled (owned_frames): the live court
    graph costs 2.5x the encode and varies by more than the logos' difference, which drowned it (pairs
    from -11 % to +36 %); a memcpy per frame, measured before each pair and taken off both sides, does
    not. Owned frames are also what the recorder gets from a real camera; lavfi's own frames are shared
    and the writer copies each (`copy_ms_per_frame`, measured apart; `logo_overhead_shared_frames`)."""
    pool = list(frames(graph, FPS))
    blend_ms: list[float] = []

    def run(k: int, logos_on: bool) -> float:
        if not logos_on:
            return record(graph, count, d / f"{name}-plain{k}", CAPTURE_ENCODE, None, owned_frames(pool, count))
        with BlendClock() as blend:
            used = record(graph, count, d / f"{name}-logos{k}", CAPTURE_ENCODE, logos, owned_frames(pool, count))
        blend_ms.append(blend.seconds * 1000 / max(1, blend.calls))
        return used

    with_runs, without_runs, loads = interleaved_pairs(pool, count, repeat, run)
    ratios = [w / wo - 1 for w, wo in zip(with_runs, without_runs, strict=True)]
    with_med, without_med = statistics.median(with_runs), statistics.median(without_runs)
    blend_med = statistics.median(blend_ms)
    copy = copy_ms(graph, count)
    encode_ms = without_med * 1000 / FPS  # recorder CPU per frame without logos
    overhead = statistics.median(ratios)
    return {
        "cpu_s_per_recorded_s": round(with_med, 3),
        "cpu_s_per_recorded_s_without": round(without_med, 3),
        "runs": repeat,
        "mb_per_hour": size_mb_per_hour(d / f"{name}-logos0", count),
        "logo_overhead": round(overhead, 4),
        "blend_ms_per_frame": round(blend_med, 3),
        "blend_overhead": round(blend_med / encode_ms, 4),
        "method": ("interleaved on/off pairs, order alternating, on the source's first second cycled as frames "
                   "the recorder owns; logo_overhead = median of the pairs' ratios"),
        "logo_overhead_pairs": [round(r, 4) for r in ratios],
        "logo_overhead_spread": spread(ratios),
        "logo_overhead_of_medians": round(with_med / without_med - 1, 4),
        "cpu_s_per_recorded_s_runs": [round(x, 4) for x in with_runs],
        "cpu_s_per_recorded_s_without_runs": [round(x, 4) for x in without_runs],
        "blend_ms_per_frame_spread": spread(blend_ms),
        "copy_ms_per_frame": round(copy, 3),
        "copy_overhead": round(copy / encode_ms, 4),
        "logo_overhead_shared_frames": round(overhead + copy / encode_ms, 4),
        "load_avg_1_5_15": loads,
    }


def drawn_logo_pairs(graph: str, count: int, d: Path, name: str, logos: BookingLogos,
                     repeat: int) -> dict[str, object]:
    """What the logos cost the encoder alone: the same pairs as logo_pairs, but the 'on' side gets frames with the
    logos already drawn (blended once, before timing) and the writer draws nothing. `encode_overhead` is then
    what x264 spends coding the logos' pixels; logo_overhead minus it is the blend's own share."""
    pool = list(frames(graph, FPS))
    prepared = logos.prepare(Geometry(W, H, bt709=True, full_range=False))
    drawn = []
    for frame in pool:
        copy = frame.reformat(format="yuv420p")  # a frame of our own to draw into
        copy.make_writable()
        blend_logos(copy, prepared.logos)
        drawn.append(copy)
    on_runs, off_runs, _ = interleaved_pairs(pool, count, repeat, lambda k, on: record(
        graph, count, d / f"{name}-drawn{k}-{on}", CAPTURE_ENCODE, None, owned_frames(drawn if on else pool, count)))
    ratios = [a / b - 1 for a, b in zip(on_runs, off_runs, strict=True)]
    return {"encode_overhead": round(statistics.median(ratios), 4),
            "encode_overhead_pairs": [round(r, 4) for r in ratios], "encode_overhead_spread": spread(ratios),
            "runs": repeat,
            "method": "frames with the logos drawn beforehand vs the same frames without, no blend in the writer"}


def logo_split(count: int, repeat: int) -> dict[str, object]:
    """Per source: the logos' whole overhead (logo_pairs) beside the encoder's share of it (drawn_logo_pairs)."""
    result: dict[str, object] = {"bench": "capture_cost --logo-split", "resolution": f"{W}x{H}", "fps": FPS,
                                 "recorded_seconds": count / FPS, "cpus": os.cpu_count(), "load_avg_start": load(),
                                 "date": datetime.now(UTC).isoformat(timespec="seconds"), "sources": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        logos = make_logos(d)
        for name, graph in SOURCES.items():
            whole = logo_pairs(graph, count, d, name, logos, repeat)
            encoder = drawn_logo_pairs(graph, count, d, name, logos, repeat)
            result["sources"][name] = {  # type: ignore[index]
                "logo_overhead": whole["logo_overhead"], "logo_overhead_spread": whole["logo_overhead_spread"],
                "blend_ms_per_frame": whole["blend_ms_per_frame"], "blend_overhead": whole["blend_overhead"],
                "encoder_share": encoder}
    result["load_avg_end"] = load()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quota-seconds", type=float, default=10.0)
    parser.add_argument("--no-quota", action="store_true")
    parser.add_argument("--quota-only", action="store_true")
    parser.add_argument("--child", type=float)
    parser.add_argument("--preset", default=CAPTURE_ENCODE.preset)
    parser.add_argument("--logos", action="store_true")
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--logo-split", action="store_true",
                        help="only the logo pairs and the encoder's share of them (drawn_logo_pairs), per source")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.logos, args.preset)
        return
    if args.quota_only:
        print(json.dumps({"bench": "capture_cost", "pi_quota": pi_quota(args.quota_seconds)}, indent=2))
        return
    count = int(args.seconds * FPS)
    recorded_s = count / FPS
    if args.logo_split:
        print(json.dumps(logo_split(count, args.repeat), indent=2))
        return
    result: dict[str, object] = {"bench": "capture_cost", "resolution": f"{W}x{H}", "fps": FPS,
                                 "recorded_seconds": recorded_s, "segment_seconds": SEGMENT_S,
                                 "cpus": os.cpu_count(), "load_avg_start": load(),
                                 "date": datetime.now(UTC).isoformat(timespec="seconds"), "sources": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        logos = make_logos(d)
        for name, graph in SOURCES.items():
            base = source_cpu(graph, count)
            rows: dict[str, object] = {"source_cpu_s_per_recorded_s": round(base / recorded_s, 3), "settings": {}}
            for label, settings in ALTERNATIVES.items():
                out = d / f"{name}-{label.split()[0]}-{settings.crf}"
                used = record(graph, count, out, settings, None) - base
                y, yuv = psnr(graph, count, out)
                rows["settings"][label] = {  # type: ignore[index]
                    "preset": settings.preset, "crf": settings.crf, "maxrate": settings.maxrate,
                    "keyframe_s": settings.gop_seconds, "cpu_s_per_recorded_s": round(used / recorded_s, 3),
                    "mb_per_hour": size_mb_per_hour(out, count), "psnr_y": y, "psnr_yuv": yuv,
                }
            plain = rows["settings"]["default (ultrafast crf26 max8M)"]  # type: ignore[index]
            rows["default_with_4_logos"] = logo_pairs(graph, count, d, name, logos, args.repeat)
            peer = ffmpeg_cpu(graph, count, CAPTURE_ENCODE, d / f"{name}-ffmpeg.mp4") - ffmpeg_source_cpu(graph, count)
            rows["ffmpeg_cli_default_settings"] = {
                "cpu_s_per_recorded_s": round(peer / recorded_s, 3),
                "mb_per_hour": round((d / f"{name}-ffmpeg.mp4").stat().st_size / 1e6 * 3600 / recorded_s, 1),
                "ours_vs_ffmpeg": round(plain["cpu_s_per_recorded_s"] / (peer / recorded_s), 3),
            }
            result["sources"][name] = rows  # type: ignore[index]
        rows_all = result["sources"].values()  # type: ignore[union-attr]
        result["goal_logo_overhead"] = GOAL_LOGO_OVERHEAD
        result["goal_met_total"] = all(r["default_with_4_logos"]["logo_overhead"] < GOAL_LOGO_OVERHEAD
                                       for r in rows_all)
        result["goal_met_blend"] = all(r["default_with_4_logos"]["blend_overhead"] < GOAL_LOGO_OVERHEAD
                                       for r in rows_all)
    result["load_avg_end"] = load()
    if not args.no_quota:
        result["pi_quota"] = pi_quota(args.quota_seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
