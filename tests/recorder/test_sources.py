"""Camera sources: a file and an HTTP live stream remuxed (no re-encode), rotation, and refusals.

Picamera2 and V4L2 need hardware this machine does not have; they are only checked to fail cleanly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from services.recorder.camera import CameraError, CapturedFrame
from services.recorder.pyav_cameras import FileCamera, open_source
from services.recorder.rotate import rotated
from tests.recorder.conftest import decoded_frames, frame_times, recording, whole_second

FPS = 15
SOURCE_S = 2.0


def make_camera_file(path: Path) -> Path:
    """An IP camera's kind of stream: H.264, one keyframe a second, no B-frames, x264 SEI saying crf=18."""
    with av.open("testsrc2=size=320x240:rate=15", format="lavfi") as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "18", "g": str(FPS),
                                                              "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == SOURCE_S * FPS:
                break
            frame.pts, frame.time_base, frame.pict_type = i, Fraction(1, FPS), av.video.frame.PictureType.NONE
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camera_file(tmp_path_factory.mktemp("camera") / "camera.mp4")


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def test_a_file_source_is_remuxed_packet_for_packet(start_recorder, listen, camera_file):
    env = start_recorder(camera_source=f"file:{camera_file}", camera_rotation=90, segment_seconds=1.0)
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    start = whole_second(1.0)
    end = start + timedelta(seconds=3)  # longer than the file: it loops like a live camera
    env.book(("remuxed", start, end))
    _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "remuxed", timeout=25)
    video = recording(env.raw / "remuxed.mp4")
    source = set(_packets(camera_file))
    recorded = _packets(video)
    assert recorded and all(p in source for p in recorded), "every packet is the camera's own: no re-encode"
    times = frame_times(video)
    assert start - timedelta(seconds=1.01) <= times[0] <= start, "starts on the keyframe at or before the start"
    assert end - timedelta(seconds=0.25) <= times[-1] < end
    assert json.loads(payload)["frames"] == len(times) == decoded_frames(video)
    with av.open(str(video)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (320, 240), "remuxed pixels are never turned"
        assert frame.rotation == -90, "CAMERA_ROTATION=90 travels as the display matrix"


class LiveHttpCamera:
    """An HTTP camera: serves the file as an endless MPEG-TS stream paced at real time, one client at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/live.ts"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            try:
                self._stream_to(conn)
            except (OSError, av.FFmpegError):
                pass  # the client went away
            finally:
                conn.close()

    def _stream_to(self, conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
        with conn.makefile("wb") as sink, av.open(sink, "w", format="mpegts") as out, \
                av.open(str(self.path)) as inp:
            ins = inp.streams.video[0]
            st = out.add_stream_from_template(ins)
            t0, loop = time.time(), 0
            while not self._stop.is_set():
                inp.seek(0)
                for packet in inp.demux(ins):
                    if not packet.size or self._stop.is_set():
                        continue
                    shift = round(loop * SOURCE_S / ins.time_base)
                    delay = t0 + float((packet.dts + shift) * ins.time_base) - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = st
                    out.mux(packet)
                loop += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


def test_an_http_live_stream_is_remuxed_without_re_encoding(start_recorder, listen, camera_file):
    camera = LiveHttpCamera(camera_file)
    try:
        env = start_recorder(camera_source=camera.url, camera_warmup_s=2.5, segment_seconds=1.0)
        finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
        start = whole_second(3.0)
        end = start + timedelta(seconds=3)
        env.book(("live", start, end))
        _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "live", timeout=30)
    finally:
        camera.close()
    video = recording(env.raw / "live.mp4")
    times = frame_times(video)
    assert start - timedelta(seconds=1.1) <= times[0] <= start + timedelta(seconds=0.1)
    assert end - timedelta(seconds=0.3) <= times[-1] < end
    steps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert max(steps) < 0.2, "a continuous stream across segments"
    assert json.loads(payload)["frames"] == len(times) == decoded_frames(video)
    data = video.read_bytes()
    assert b"crf=18.0" in data, "the camera's own H.264 (its encoder's SEI) is in the file"
    assert b"crf=23.0" not in data, "the recorder's own encoder (CRF 23) never touched it"


def test_rotation_turns_decoded_frames():
    graph = "color=c=red:s=160x240:r=15[l];color=c=blue:s=160x240:r=15[r];[l][r]hstack,format=yuv420p[out0]"
    camera = rotated(open_source(f"lavfi:{graph}", 320, 240, 15, 1.0), 90)
    try:
        assert (camera.width, camera.height) == (240, 320)
        item = next(iter(camera.frames()))
        assert isinstance(item, CapturedFrame)
        rgb = item.frame.to_ndarray(format="rgb24")
        assert rgb.shape == (320, 240, 3)
        top, bottom = rgb[10, 120].astype(int), rgb[-10, 120].astype(int)
        assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0], "clockwise: the left (red) half is on top"
        assert np.abs(rgb[:150].astype(int) - [254, 0, 0]).max() < 40
    finally:
        camera.close()


def test_a_file_camera_replays_in_real_time(camera_file):
    camera = FileCamera(camera_file)
    try:
        started = time.time()
        items = []
        for item in camera.frames():
            items.append(item)
            if len(items) == 2 * FPS + 5:
                break
        elapsed = time.time() - started
    finally:
        camera.close()
    assert elapsed >= SOURCE_S, "paced like a live camera, and looped past the end of the file"
    gaps = {round((b.captured_at - a.captured_at).total_seconds() * FPS, 3)
            for a, b in zip(items, items[1:], strict=False)}
    assert gaps == {1.0}, gaps
    assert items[0].keyframe and items[FPS].keyframe and items[2 * FPS].keyframe


@pytest.mark.parametrize("source, words", [
    ("/dev/video99", "does not exist"),
    ("picamera2", "Raspberry Pi"),
    ("rtsp://admin:hunter22@127.0.0.1:9/stream", "***@127.0.0.1"),
    ("carrier-pigeon", "unknown CAMERA_SOURCE"),
])
def test_unavailable_sources_fail_as_camera_errors(source, words):
    with pytest.raises(CameraError) as info:
        open_source(source, 320, 240, 15, 1.0)
    assert words in str(info.value) and "hunter22" not in str(info.value)
