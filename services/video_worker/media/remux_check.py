"""Finish by remux: whether a recorder segment can be a piece of the finished video as it is, and why not.

A segment the recorder encoded from raw frames already is the delivered video: the logos were blended
before its one encode and its format is stamped on it (shared/capture_stamp.py). It is used untouched
(hard-linked, so not one byte is copied) when all of these hold; otherwise it is transcoded, and the
reason is recorded on the part, the job and the events:

  remuxed_source         no format stamp: the recorder copied a camera's packets (RTSP/HTTP/file: no logo on
                         them; Picamera2: logos drawn by its pre_callback, stamped, never drawn twice)
  logo_changed           the booking's logos (its plan) are not the ones blended at capture
  parameter_sets_differ  its format is not the booking's, or its SPS/PPS or time base are not the intro's
  damaged_segment        its header or packets do not read cleanly (a crash mid-write, a bad card)
  segment_audio          it has an audio track (the remux join carries only the intro's audio)

An intro that cannot be prepared does not stop a remux: the video is then delivered without it,
as the transcode would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

import av

from shared import capture_stamp
from shared.atomic import link_or_copy
from shared.overlay import LogoSpec
from shared.recordings.timeline import first_capture
from shared.video_format import OutputFormat

REMUX = "remux"
TRANSCODE = "transcode"


class Reason(StrEnum):
    remuxed_source = "remuxed_source"
    logo_changed = "logo_changed"
    parameter_sets_differ = "parameter_sets_differ"
    damaged_segment = "damaged_segment"
    segment_audio = "segment_audio"
    whole_recording = "whole_recording"  # the segments could not make the video: the recording is processed whole


@dataclass(frozen=True)
class SegmentHeader:
    """What a segment's header says (readable while the segment is still being written)."""

    format_json: str | None
    logos: str | None
    extradata: bytes
    time_base: Fraction | None
    has_audio: bool
    first_capture: datetime | None = None

    @property
    def stamped(self) -> bool:
        return self.format_json is not None


class HeaderUnreadable(Exception):
    pass


def read_header(path: Path) -> SegmentHeader:
    """Raises HeaderUnreadable (no header written yet, or a damaged one)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                raise HeaderUnreadable(f"{path.name} has no video stream")
            video = c.streams.video[0]
            fmt, logos = capture_stamp.read(dict(c.metadata))
            return SegmentHeader(format_json=fmt, logos=logos, extradata=bytes(video.codec_context.extradata or b""),
                                 time_base=video.time_base, has_audio=bool(c.streams.audio),
                                 first_capture=first_capture(c))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise HeaderUnreadable(f"{path.name}: {exc}") from exc


@dataclass(frozen=True)
class PacketCheck:
    packets: int
    problem: str | None
    last_s: float = 0.0  # the last frame's time after the first's (capture time: a dropped frame is a gap)


def check_packets(path: Path) -> PacketCheck:
    """Demux every video packet (no decode: a fraction of a second per minute of 1080p): the piece must
    start on a keyframe and read to its end with increasing timestamps."""
    packets = 0
    last_dts: int | None = None
    first_pts: int | None = None
    last_pts = 0
    tb = Fraction(0)
    try:
        with av.open(str(path)) as c:
            video = c.streams.video[0]
            tb = video.time_base or Fraction(0)
            for packet in c.demux(video):
                if packet.size == 0:
                    continue
                if packet.pts is None or packet.dts is None:
                    return PacketCheck(packets, f"packet {packets} has no timestamp")
                if packets == 0 and not packet.is_keyframe:
                    return PacketCheck(packets, "does not start on a keyframe")
                if last_dts is not None and packet.dts <= last_dts:
                    return PacketCheck(packets, f"timestamps go back at packet {packets}")
                if packet.is_corrupt:
                    return PacketCheck(packets, f"packet {packets} is corrupt")
                last_dts = packet.dts
                first_pts = packet.pts if first_pts is None else first_pts
                last_pts = max(last_pts, packet.pts)
                packets += 1
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        return PacketCheck(packets, f"unreadable after {packets} packets: {exc}")
    last_s = float((last_pts - first_pts) * tb) if first_pts is not None else 0.0
    return PacketCheck(packets, None if packets else "no video packet", last_s)


def _nal_units_annexb(data: bytes) -> list[bytes]:
    units, i, n = [], 0, len(data)
    starts = []
    while i < n - 2:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        units.append(data[s:end].rstrip(b"\x00"))
    return units


def _nal_units_avcc(data: bytes) -> list[bytes]:
    """ISO 14496-15 AVCDecoderConfigurationRecord: its SPS and PPS."""
    units: list[bytes] = []
    pos = 5
    for count_mask in (0x1F, 0xFF):
        if pos >= len(data):
            break
        count = data[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(data[pos:pos + 2], "big")
            units.append(data[pos + 2:pos + 2 + size])
            pos += 2 + size
    return units


def parameter_sets(extradata: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(SPS, PPS) NAL units of H.264 extradata in either form (avcC from a container, Annex B from an encoder)."""
    if not extradata:
        return (), ()
    units = _nal_units_avcc(extradata) if extradata[0] == 1 else _nal_units_annexb(extradata)
    sps = tuple(u for u in units if u and u[0] & 0x1F == 7)
    pps = tuple(u for u in units if u and u[0] & 0x1F == 8)
    return sps, pps


def logos_to_draw(header: SegmentHeader | None, specs: list[LogoSpec], booking_logos: str) -> list[LogoSpec]:
    """What a transcode of this segment must draw: nothing when capture already blended the booking's logos
    (a damaged segment, other parameter sets, or a camera that drew them before its own encoder: Picamera2's
    segments carry the logo stamp without a format stamp), else the booking's."""
    if header is not None and header.logos is not None and header.logos == booking_logos:
        return []
    return specs


def remux_blocker(header: SegmentHeader, fmt: OutputFormat, booking_logos: str,
                  intro_extradata: bytes | None, intro_time_base: Fraction | None) -> tuple[Reason, str] | None:
    """(reason, detail) why this segment cannot be used as it is; None when it can (packets still to check)."""
    if not header.stamped:
        return Reason.remuxed_source, "the recorder copied the camera's packets: no logo drawn at capture"
    assert header.format_json is not None
    try:
        seg_fmt = OutputFormat.from_json(header.format_json)
    except (ValueError, KeyError, TypeError) as exc:
        return Reason.damaged_segment, f"unreadable format stamp: {exc}"
    if seg_fmt.key != fmt.key:
        return Reason.parameter_sets_differ, "segment format differs from the booking's"
    if header.logos != booking_logos:
        return Reason.logo_changed, "the booking's logos are not the ones drawn at capture"
    if header.has_audio:
        return Reason.segment_audio, "the segment has audio"
    if intro_extradata is not None:
        if parameter_sets(intro_extradata) != parameter_sets(header.extradata):
            return Reason.parameter_sets_differ, "the intro's SPS/PPS differ from the segment's"
        if intro_time_base is not None and header.time_base != intro_time_base:
            return Reason.parameter_sets_differ, f"time base {header.time_base} differs from the intro's"
    return None


_TIME_BASES: dict[tuple[str, int, int], Fraction | None] = {}


def intro_time_base(path: Path) -> Fraction | None:
    """A prepared intro's video time base (remembered per file version: opening it decodes a frame)."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _TIME_BASES:
        try:
            with av.open(str(path)) as c:
                _TIME_BASES[key] = c.streams.video[0].time_base
        except (av.FFmpegError, OSError, IndexError):
            return None
        if len(_TIME_BASES) > 64:
            _TIME_BASES.pop(next(iter(_TIME_BASES)))
    return _TIME_BASES[key]


def link_piece(segment: Path, target: Path) -> None:
    """The segment as a processed piece, without copying its bytes (a hard link: the recorder may delete its
    name). Across file systems it is copied (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.link"
    tmp.unlink(missing_ok=True)
    link_or_copy(segment, tmp)
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
