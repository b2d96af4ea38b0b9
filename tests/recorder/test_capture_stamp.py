"""The recorder's one encode: a raw-frame segment is encoded with the delivered format and says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from services.recorder.camera import CapturedPacket
from services.recorder.pyav_cameras import FileCamera
from services.recorder.writer import EncodeSpec, SegmentWriter, capture_settings
from shared import capture_stamp
from shared.settings import Settings
from shared.video_format import OutputFormat, derive_format
from tests.recorder.conftest import encode_segment

FPS = 15
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def _encode(path: Path, spec: EncodeSpec, count: int) -> SegmentWriter:
    return encode_segment(path, spec, count, T0, FPS)


def test_an_encoded_segment_is_stamped_with_its_output_format_and_starts_on_an_idr(tmp_path):
    settings = capture_settings(Settings(camera_preset="superfast", camera_crf=30, camera_maxrate=2_000_000,
                                         camera_keyframe_s=0.5))
    writer = _encode(tmp_path / "seg.mp4", EncodeSpec(160, 120, FPS, settings), 2 * FPS)
    with av.open(str(tmp_path / "seg.mp4")) as c:
        fmt_json, logos = capture_stamp.read(c.metadata)
        packets = [p for p in c.demux(video=0) if p.size]
        first = next(iter(av.open(str(tmp_path / "seg.mp4")).decode(video=0)))
    assert fmt_json is not None and logos == capture_stamp.NO_LOGOS
    fmt = OutputFormat.from_json(fmt_json)
    assert fmt == writer.format
    assert (fmt.width, fmt.height, fmt.rate, fmt.pix_fmt) == (160, 120, Fraction(FPS), "yuv420p")
    assert fmt.encode.preset == "superfast" and fmt.encode.crf == 30 and fmt.encode.maxrate == 2_000_000
    assert fmt == derive_format(first, Fraction(FPS), settings)[0], "what the worker derives for an intro"
    assert packets[0].is_keyframe, "the segment starts on a keyframe"
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert keyframes[:4] == [0, 8, 16, 24][: len(keyframes[:4])] and len(keyframes) >= 4, \
        f"a keyframe every CAMERA_KEYFRAME_S=0.5 s: {keyframes}"


def test_capture_defaults_come_from_the_camera_settings():
    encode = capture_settings(Settings())
    assert (encode.codec, encode.preset, encode.crf, encode.maxrate, encode.bitrate, encode.gop_seconds) == \
        ("libx264", "ultrafast", 26, 8_000_000, None, 1.0)
    assert capture_settings(Settings(camera_bitrate=3_000_000, camera_maxrate=0)).bitrate == 3_000_000


def test_a_remuxed_segment_carries_no_stamp(tmp_path):
    source = tmp_path / "camera.mp4"
    _encode(source, EncodeSpec(160, 120, FPS), FPS)
    camera = FileCamera(source)
    writer = SegmentWriter(tmp_path / "remux.mp4", T0, copy=camera.encoded)
    with av.open(str(source)) as c:
        for i, packet in enumerate(p for p in c.demux(video=0) if p.size):
            writer.write(CapturedPacket(packet, T0 + timedelta(seconds=i / FPS), packet.is_keyframe))
    writer.close()
    camera.close()
    with av.open(str(tmp_path / "remux.mp4")) as c:
        assert capture_stamp.read(c.metadata) == (None, None)
        assert sum(1 for _ in c.decode(video=0)) == FPS
