"""What the worker's orientation and colour rules cost per recorded second (docs/video.md), beside the ffmpeg CLI.

Generates a 1080p30 full-range (yuvj420p) H.264 recording (libx264 ultrafast, 1 s GOP), then measures
CPU seconds per recorded second, single-threaded, best of the rounds:
  decode            PyAV decode alone (the floor every path pays)
  decode_limited    decode + the conversion to limited range the worker does for a full-range source
                    (shared/video_format.py to_limited_range)
  decode_transpose  decode + a 90-degree pixel turn (libavfilter transpose): what turning the recording's
                    pixels would have cost, instead of carrying its display matrix (which costs nothing)
  ffmpeg_decode / ffmpeg_limited   the ffmpeg CLI doing the same decode, and decode + scale=out_range=tv
The added costs (`*_added`) are the differences to the matching decode. Prints one JSON object.

    python bench/media_conversions.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.video_format import to_limited_range  # noqa: E402

W, H, FPS = 1920, 1080, 30


def make_full_range(path: Path, seconds: int) -> Path:
    xs = np.linspace(0, 255, W, dtype=np.float32)[None, :]
    ys = np.linspace(0, 60, H, dtype=np.float32)[:, None]
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuvj420p"
        s.options = {"preset": "ultrafast", "g": str(FPS), "bf": "0"}
        chroma = np.full((H // 2, W), 128, np.uint8)
        for i in range(seconds * FPS):
            y = np.clip(xs + ys + (i % 30), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.concatenate([y, chroma]), format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def transposer(first: av.VideoFrame) -> av.filter.Graph:
    graph = av.filter.Graph()
    src = graph.add_buffer(width=first.width, height=first.height, format=first.format.name,
                           time_base=Fraction(1, FPS))
    graph.link_nodes(src, graph.add("transpose", "clock"), graph.add("buffersink")).configure()
    return graph


def in_process(path: Path, work: str) -> float:
    """CPU seconds of one pass: decode every frame and do `work` to it."""
    started = time.process_time()
    graph = None
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        for n, frame in enumerate(c.decode(stream)):
            if work == "limited":
                to_limited_range(frame, frame.width, frame.height)
            elif work == "transpose":
                graph = graph or transposer(frame)
                frame.pts, frame.time_base = n, Fraction(1, FPS)
                graph.push(frame)
                graph.pull()
    return time.process_time() - started


def ffmpeg(path: Path, limited: bool) -> float:
    """CPU seconds (user + system, from the child's rusage) of the ffmpeg CLI doing the same."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    vf = ["-vf", "scale=out_range=tv,format=yuv420p"] if limited else []
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), "-filter_threads", "1", *vf,
                    "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ezrec-bench-") as tmp:
        path = make_full_range(Path(tmp) / "full.mp4", args.seconds)
        runs: dict[str, list[float]] = {k: [] for k in ("decode", "decode_limited", "decode_transpose",
                                                        "ffmpeg_decode", "ffmpeg_limited")}
        for _ in range(args.rounds):
            runs["decode"].append(in_process(path, "none"))
            runs["decode_limited"].append(in_process(path, "limited"))
            runs["decode_transpose"].append(in_process(path, "transpose"))
            runs["ffmpeg_decode"].append(ffmpeg(path, limited=False))
            runs["ffmpeg_limited"].append(ffmpeg(path, limited=True))
    per_s = {k: round(min(v) / args.seconds, 4) for k, v in runs.items()}
    result = {
        "bench": "media_conversions",
        "input": f"{W}x{H}@{FPS} yuvj420p H.264, {args.seconds} s",
        "cpu_s_per_recorded_s": per_s,
        "limited_added": round(per_s["decode_limited"] - per_s["decode"], 4),
        "ffmpeg_limited_added": round(per_s["ffmpeg_limited"] - per_s["ffmpeg_decode"], 4),
        "transpose_added_avoided": round(per_s["decode_transpose"] - per_s["decode"], 4),
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
