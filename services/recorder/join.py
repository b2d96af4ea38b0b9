"""Joins a booking's parts into RAW_RECORDINGS_DIR/<booking_id>.mp4 by packet copy (no re-encode)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import av

from shared.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass
class JoinResult:
    path: Path
    frames: int
    first_frame_at: datetime
    last_frame_at: datetime
    size_bytes: int


class NothingRecorded(Exception):
    pass


def part_files(booking_dir: Path) -> list[Path]:
    return sorted(booking_dir.glob("part-*.mp4"))


def join_parts(parts: list[Path], target: Path, origin: datetime) -> JoinResult:
    """A truncated last fragment (power cut) is read up to where it breaks; timestamps stay monotonic."""
    frames, first_pts, last_pts, last_dts = 0, None, None, None
    time_base = None
    with atomic_path(target, suffix=".mp4") as tmp:
        out = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        out_stream = None
        try:
            for part in parts:
                try:
                    src = av.open(str(part))
                except av.FFmpegError as exc:
                    log.warning("skipping unreadable part %s: %s", part, exc)
                    continue
                with src:
                    if not src.streams.video:
                        continue
                    in_stream = src.streams.video[0]
                    if out_stream is None:
                        out_stream = out.add_stream_from_template(in_stream)
                        time_base = in_stream.time_base
                    try:
                        for packet in src.demux(in_stream):
                            if packet.size == 0 or packet.dts is None:
                                continue
                            if last_dts is not None and packet.dts <= last_dts:
                                continue
                            last_dts = packet.dts
                            first_pts = packet.pts if first_pts is None else first_pts
                            last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
                            packet.stream = out_stream
                            out.mux(packet)
                            frames += 1
                    except av.FFmpegError as exc:
                        log.warning("part %s ends in a damaged fragment (%s); kept what was readable", part, exc)
        finally:
            try:
                out.close()
            except (av.FFmpegError, ValueError):
                if frames:
                    raise
        if frames == 0 or time_base is None:
            raise NothingRecorded(f"no readable frames in {[p.name for p in parts]}")
    assert first_pts is not None and last_pts is not None
    return JoinResult(
        path=target,
        frames=frames,
        first_frame_at=origin + timedelta(seconds=float(first_pts * time_base)),
        last_frame_at=origin + timedelta(seconds=float(last_pts * time_base)),
        size_bytes=target.stat().st_size,
    )


def describe_recording(path: Path, origin: datetime) -> JoinResult:
    """Facts of an already joined file, for a finalisation interrupted after the rename."""
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        time_base = stream.time_base
        pts = [p.pts for p in src.demux(stream) if p.size and p.pts is not None]
    if not pts or time_base is None:
        raise NothingRecorded(f"{path} holds no video packets")
    return JoinResult(
        path=path,
        frames=len(pts),
        first_frame_at=origin + timedelta(seconds=float(min(pts) * time_base)),
        last_frame_at=origin + timedelta(seconds=float(max(pts) * time_base)),
        size_bytes=path.stat().st_size,
    )
