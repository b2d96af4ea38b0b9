"""Writes one segment of a booking's recording: fragmented MP4, readable up to the last fragment after a kill -9.

Two modes behind one `write(item)`: frames are encoded once, with the delivered video's format
(shared/video_format.py: the output format is derived from the first frame and the capture's
EncodeSettings; a new encoder per segment, so every segment starts on an IDR frame) and stamped
with it (shared/capture_stamp.py), so the worker can use the segment as the finished picture by
packet copy. Packets from an encoded camera are muxed as they are (no re-encode; a segment starts
on a keyframe; unstamped, since the recorder never saw its frames).

Timestamps are capture times relative to the booking's origin, so segments written by successive
sessions or recorder runs join into one continuous timeline by packet copy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
from av.video.frame import PictureType

from services.recorder.camera import Captured, CapturedFrame, CapturedPacket, EncodedFormat
from services.recorder.logos import NONE, BookingLogos, Geometry, PreparedSet
from shared import capture_stamp
from shared.atomic import fsync_dir
from shared.overlay import blend_logos
from shared.recordings import timeline
from shared.video_encode import EncodeSettings
from shared.video_format import OutputFormat, add_format_stream, derive_format

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

FRAGMENTED = f"frag_keyframe+empty_moov+default_base_moof+{timeline.MOVFLAG_METADATA}"
COPY_TIME_BASE = Fraction(1, 90000)


CAPTURE_ENCODE = EncodeSettings(preset="ultrafast", crf=26, maxrate=8_000_000, gop_seconds=1.0)
"""The capture defaults (docs/capture.md): what a Pi 5 encodes at 1080p30 within about one core."""


def capture_settings(settings: Settings) -> EncodeSettings:
    """The recorder's EncodeSettings from CAMERA_* (the one encode of raw-frame sources)."""
    return EncodeSettings(codec="libx264", preset=settings.camera_preset, crf=settings.camera_crf,
                          bitrate=settings.camera_bitrate or None, maxrate=settings.camera_maxrate or None,
                          gop_seconds=settings.camera_keyframe_s)


@dataclass(frozen=True)
class EncodeSpec:
    """How a booking's raw frames are encoded: frames are scaled to width x height if they differ, and
    the booking's logos (prepared once, at its first frame) are blended into each before the encode."""

    width: int
    height: int
    fps: int
    settings: EncodeSettings = CAPTURE_ENCODE
    logos: BookingLogos | None = field(default=None, compare=False)


class SegmentWriter:
    def __init__(self, path: Path, origin: datetime, *, encode: EncodeSpec | None = None,
                 copy: EncodedFormat | None = None, drawn_logos: str | None = None) -> None:
        """`drawn_logos`: for a copy, the fingerprint of logos its camera drew before encoding (Picamera2)."""
        if (encode is None) == (copy is None):
            raise ValueError("a segment either encodes frames or copies packets")
        self.path = path
        self.origin = origin
        self.frames = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self.size_bytes = 0
        self.closed = False
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._need_keyframe = True
        self._stamped = False
        self.format: OutputFormat | None = None
        """The encoded segment's output format (set at its first frame); None for a remuxed one."""
        self.logos: PreparedSet = NONE
        path.parent.mkdir(parents=True, exist_ok=True)
        movflags = FRAGMENTED
        if copy is not None and copy.template is None:
            movflags += "+delay_moov"  # codec headers come with the first keyframe (Picamera2)
        # flush_packets: each finished fragment (one GOP, one second) goes to the OS at once, so a
        # kill -9 loses at most the GOP being encoded; fsync at close covers a power cut.
        self._out = av.open(str(path), "w", format="mp4", container_options={"movflags": movflags,
                                                                              "flush_packets": "1"})
        try:
            if encode is not None:
                self._setup_encoder(encode)
            else:
                assert copy is not None
                self._setup_copy(copy)
                if drawn_logos and drawn_logos != capture_stamp.NO_LOGOS:
                    self._out.metadata[capture_stamp.LOGOS_KEY] = drawn_logos
        except BaseException:
            self._out.close()
            path.unlink(missing_ok=True)
            raise

    # ---- set-up ----------------------------------------------------------------------------------

    def _setup_encoder(self, spec: EncodeSpec) -> None:
        """The stream is added at the first frame: its pixel format and colour tags decide the output format."""
        self._spec = spec
        self._rate = Fraction(spec.fps)
        self._time_base = Fraction(1, spec.fps)
        self._encoding = True

    def _open_encoder(self, first: av.VideoFrame) -> None:
        fmt, warning = derive_format(first, self._rate, self._spec.settings)
        if warning:
            log.warning("%s: %s", self.path.name, warning)
        if self._spec.logos is not None:
            self.logos = self._spec.logos.prepare(Geometry(fmt.width, fmt.height, fmt.bt709, fmt.full_range))
        self._blend = list(self.logos.logos)
        self._out.metadata.update(capture_stamp.stamp(fmt.to_json(), self.logos.fingerprint))
        self._stream = add_format_stream(self._out, fmt)
        self.format = fmt

    def _setup_copy(self, fmt: EncodedFormat) -> None:
        if fmt.template is not None:
            stream = self._out.add_stream_from_template(fmt.template)
        else:
            stream = self._out.add_stream(fmt.codec_name, rate=fmt.fps)
            stream.width, stream.height = fmt.width, fmt.height
        if fmt.display_rotation:
            stream.set_display_rotation((-fmt.display_rotation) % 360)
        self._time_base = COPY_TIME_BASE
        self._stream = stream
        self._encoding = False

    # ---- writing ---------------------------------------------------------------------------------

    def write(self, item: Captured) -> bool:
        """False when the item was not written (out of order, or waiting for a keyframe)."""
        if isinstance(item, CapturedFrame):
            return self._write_frame(item)
        return self._write_packet(item)

    def _write_frame(self, item: CapturedFrame) -> bool:
        pts = round((item.captured_at - self.origin).total_seconds() * self._rate)
        if pts < 0 or (self._last_pts is not None and pts <= self._last_pts):
            return False
        frame = item.frame
        if frame.width != self._spec.width or frame.height != self._spec.height:
            frame = frame.reformat(width=self._spec.width, height=self._spec.height)
        if self.format is None:
            self._open_encoder(frame)
        fmt = self.format
        assert fmt is not None
        if frame.format.name != fmt.pix_fmt or frame.width != fmt.width or frame.height != fmt.height:
            frame = frame.reformat(width=fmt.width, height=fmt.height, format=fmt.pix_fmt)
        if self._blend:
            frame.make_writable()  # no copy unless a decoder still references its buffers
            blend_logos(frame, self._blend)
        frame.pts, frame.time_base = pts, self._time_base
        # Sources may tag frames as I (lavfi does) and libx264 obeys: let the encoder choose its GOP.
        frame.pict_type = PictureType.I if self._last_pts is None else PictureType.NONE
        self._count(item.captured_at)
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._mux(packet)
        return True

    def _write_packet(self, item: CapturedPacket) -> bool:
        if item.after_gap:
            self._need_keyframe = True
        if self._need_keyframe and not item.keyframe:
            return False
        packet = item.packet
        pts = round((item.captured_at - self.origin).total_seconds() / self._time_base)
        dts = pts
        if packet.pts is not None and packet.dts is not None and packet.time_base is not None:
            dts = pts - round((packet.pts - packet.dts) * packet.time_base / self._time_base)
        if self._last_dts is not None and dts <= self._last_dts:
            dts = self._last_dts + 1
        if dts < 0 or pts < dts:
            return False
        self._need_keyframe = False
        packet.stream = self._stream
        packet.time_base = self._time_base
        packet.pts, packet.dts = pts, dts
        self._count(item.captured_at)
        self._last_dts = dts
        self._mux(packet)
        return True

    def _mux(self, packet: av.Packet) -> None:
        """The first packet is the first frame (an encoder's first output is its IDR; a copy starts on a keyframe)."""
        if not self._stamped and self.first_at is not None:
            timeline.stamp(self._out, self.first_at)
            self._stamped = True
        self._out.mux(packet)

    def _count(self, at: datetime) -> None:
        self.frames += 1
        if self.first_at is None:
            self.first_at = at
        self.last_at = at

    # ---- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, write the last fragment, fsync: after this the segment survives a power cut."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._encoding and self.frames:
                for packet in self._stream.encode(None):
                    self._mux(packet)
        finally:
            try:
                self._out.close()
            except (av.FFmpegError, ValueError) as exc:
                if self.frames:
                    raise
                log.debug("closing empty segment %s: %s", self.path, exc)
        if self.frames == 0:
            self.path.unlink(missing_ok=True)
            return
        with open(self.path, "rb") as fh:
            os.fsync(fh.fileno())
        fsync_dir(self.path.parent)  # the segment's name survives a power cut too
        self.size_bytes = self.path.stat().st_size
