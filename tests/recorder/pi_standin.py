"""Stand-ins for `libcamera` and `picamera2`, the one thing this machine cannot have: a Pi camera.

They keep picamera2's documented contract, so picam.py is tested against what a Pi would hand it:
`start_recording(encoder, output)` starts the outputs and an encoder thread that, for every frame
at the configured FrameRate in real time, calls `output.outputframe(bytes, keyframe, timestamp)`.
The bytes are H.264 Annex-B access units from libx264 (no global header, so SPS/PPS come again with
every keyframe, as `repeat=True` asks of the Pi's encoder), a keyframe every `iperiod` frames, no
B-frames; `timestamp` is the sensor's monotonic clock in microseconds, relative to the first frame
(picamera2's Encoder._timestamp). Only the pixels are made up: a gradient with a moving box.

Before encoding a frame it calls `pre_callback(request)` as Picamera2 does (its camera thread, before any
encoder), where `MappedArray(request, "main")` maps the YUV420 buffer the encoder then reads, shaped as
picamera2's helpers shape it: (height * 3/2, stride), with a stride padded past the width as libcamera's is;
`request.get_metadata()["SensorTimestamp"]` is the sensor time in ns.

`start()` without an encoder runs the same camera loop (Picamera2's event loop calls `pre_callback` for every
completed request whether or not an encoder is attached), which is how a recorder takes raw frames.
`picamera2.platform.get_platform()` answers `Platform.VC4` (a Pi 4, hardware encoder) unless a test sets
`PiState.platform` to `Platform.PISP` (a Pi 5: no hardware encoder).
"""

from __future__ import annotations

import enum
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest


@dataclass
class Transform:
    """libcamera.Transform: the ISP's flips (a 180° turn is hflip + vflip)."""

    hflip: bool = False
    vflip: bool = False
    transpose: bool = False


class Output:
    """picamera2.outputs.Output: the encoder starts it, feeds it frames, stops it."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        """Subclasses write the frame somewhere."""


STRIDE_ALIGN = 128
"""libcamera pads rows; a stride wider than the picture makes sure drawing code honours it."""


class CompletedRequest:
    """picamera2.request.CompletedRequest, as far as a pre_callback uses it: metadata and the stream buffers."""

    def __init__(self, buffers: dict[str, np.ndarray], sensor_ns: int) -> None:
        self.buffers = buffers
        self._metadata = {"SensorTimestamp": sensor_ns}

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)


class MappedArray:
    """picamera2.MappedArray: `.array` is the stream's buffer itself (no copy), YUV420 shaped (h*3/2, stride)."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True) -> None:
        self._buffer = request.buffers[stream]
        self.array: np.ndarray | None = None

    def __enter__(self) -> MappedArray:
        self.array = self._buffer
        return self

    def __exit__(self, *exc: object) -> None:
        self.array = None


class H264Encoder:
    """picamera2.encoders.H264Encoder's constructor; the stand-in camera does the encoding."""

    def __init__(self, bitrate: int | None = None, repeat: bool = False, iperiod: int | None = None,
                 framerate: float | None = None, enable_sps_framerate: bool = False, qp: int | None = None,
                 profile: str | None = None) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self.output: Output | None = None


class Platform(enum.Enum):
    """picamera2.platform.Platform's members."""

    VC4 = "vc4"
    PISP = "pisp"


@dataclass
class PiState:
    """What the test arranges (an open failure) and observes (what picam.py asked the camera for)."""

    platform: Platform = Platform.VC4
    init_error: Exception | None = None
    configure_error: Exception | None = None  # raised by configure(), after the camera was opened
    opened: list[Picamera2] = field(default_factory=list)
    attempts: int = 0


class Picamera2:
    state = PiState()

    def __init__(self, camera_num: int = 0) -> None:
        type(self).state.attempts += 1
        if type(self).state.init_error is not None:
            raise type(self).state.init_error
        self.config: dict[str, Any] | None = None
        self.encoder: H264Encoder | None = None
        self.frames_sent = 0
        self.keyframes_with_headers = 0
        self.closed = False
        self.stopped = False
        self.pre_callback: Any = None
        self.encoded_frames: list[np.ndarray] = []
        """Copies of the Y plane the encoder received, for frames `keep_frames` asks for (tests)."""
        self.keep_frames: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        type(self).state.opened.append(self)

    def create_video_configuration(self, main: dict[str, Any] | None = None, lores: Any = None, raw: Any = None,
                                   transform: Transform | None = None, controls: dict[str, Any] | None = None,
                                   **kwargs: Any) -> dict[str, Any]:
        main = {"size": (1280, 720), "format": "XBGR8888", **(main or {})}
        return {"use_case": "video", "main": main, "transform": transform or Transform(),
                "controls": {"FrameRate": 30.0, **(controls or {})}, **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        if type(self).state.configure_error is not None:
            raise type(self).state.configure_error
        self.config = config

    def start_recording(self, encoder: H264Encoder, output: Output, pts: Any = None, quality: Any = None) -> None:
        if self.config is None:
            raise RuntimeError("Camera must be configured before recording")
        if not isinstance(output, Output):
            raise RuntimeError("Must pass Output")
        self.encoder = encoder
        encoder.output = output
        output.start()
        self._thread = threading.Thread(target=self._encode, args=(encoder, output), name="pi-encoder",
                                        daemon=True)
        self._thread.start()

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        """The camera running with no encoder: every request goes through `pre_callback` only."""
        if self.config is None:
            raise RuntimeError("Camera must be configured before starting")
        self._thread = threading.Thread(target=self._encode, args=(None, None), name="pi-camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.stopped = True

    def _encode(self, encoder: H264Encoder | None, output: Output | None) -> None:
        assert self.config is not None
        width, height = self.config["main"]["size"]
        fps = float(self.config["controls"]["FrameRate"])
        ctx = None
        if encoder is not None:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
            ctx.time_base, ctx.framerate = Fraction(1, round(fps)), Fraction(round(fps))
            ctx.gop_size, ctx.max_b_frames = encoder.iperiod or 60, 0
            if encoder.bitrate:
                ctx.bit_rate = encoder.bitrate
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "scenecut=0"}
            ctx.open()
        sensor0 = time.monotonic_ns()
        first_us: int | None = None
        n = 0
        while not self._stop.is_set():
            due_ns = sensor0 + round(n * 1e9 / fps)
            delay = (due_ns - time.monotonic_ns()) / 1e9
            if delay > 0 and self._stop.wait(delay):
                break
            sensor_us = due_ns // 1000
            first_us = sensor_us if first_us is None else first_us
            stride = -(-width // STRIDE_ALIGN) * STRIDE_ALIGN
            buffer = _buffer(_picture(width, height, n), width, height, stride)
            if self.pre_callback is not None:
                self.pre_callback(CompletedRequest({"main": buffer}, due_ns))
            if n in self.keep_frames:
                self.encoded_frames.append(_unpad(buffer, width, height, stride)[:height].copy())
            if ctx is None or output is None:  # no encoder: the callback was the frame's only reader
                n += 1
                continue
            frame = av.VideoFrame.from_ndarray(_unpad(buffer, width, height, stride), format="yuv420p")
            frame.pts = n
            for packet in ctx.encode(frame):
                data = bytes(packet)
                assert data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")), "Annex-B start code"
                if packet.is_keyframe and _has_sps_pps(data):
                    self.keyframes_with_headers += 1
                output.outputframe(data, packet.is_keyframe, sensor_us - first_us)
                self.frames_sent += 1
            n += 1

    def stop_recording(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.encoder is not None and self.encoder.output is not None:
            self.encoder.output.stop()
        self.stopped = True

    def close(self) -> None:
        self.closed = True


def _picture(width: int, height: int, n: int) -> np.ndarray:
    """yuv420p planes: a diagonal luma gradient with a bright box moving 4 px a frame, neutral chroma."""
    planes = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    y = (np.add.outer(np.arange(height), np.arange(width)) * 255 // (width + height)).astype(np.uint8)
    x0 = (n * 4) % max(1, width - 32)
    y[height // 3:height // 3 + 32, x0:x0 + 32] = 235
    planes[:height] = y
    return planes


def _buffer(planes: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """yuv420p planes laid out in a libcamera YUV420 buffer: padded rows, chroma rows of stride/2."""
    buffer = np.zeros((height * 3 // 2, stride), np.uint8)
    flat = buffer.reshape(-1)
    luma, chroma = height * stride, (height // 2) * (stride // 2)
    flat[:luma].reshape(height, stride)[:, :width] = planes[:height]
    u = planes[height:height + height // 4].reshape(height // 2, width // 2)
    v = planes[height + height // 4:].reshape(height // 2, width // 2)
    flat[luma:luma + chroma].reshape(height // 2, stride // 2)[:, :width // 2] = u
    flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, stride // 2)[:, :width // 2] = v
    return buffer


def _unpad(buffer: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """What the encoder reads from the buffer: packed yuv420p planes (PyAV's (h*3/2, w) layout)."""
    flat = buffer.reshape(-1)
    luma, chroma = height * stride, (height // 2) * (stride // 2)
    y = flat[:luma].reshape(height, stride)[:, :width]
    u = flat[luma:luma + chroma].reshape(height // 2, stride // 2)[:, :width // 2]
    v = flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, stride // 2)[:, :width // 2]
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)


def _has_sps_pps(data: bytes) -> bool:
    """NAL types 7 (SPS) and 8 (PPS) after Annex-B start codes."""
    types_seen = {data[i + 3] & 0x1F for i in range(len(data) - 3) if data[i:i + 3] == b"\x00\x00\x01"}
    return {7, 8} <= types_seen


def install(monkeypatch: pytest.MonkeyPatch) -> PiState:
    """Puts the stand-ins where `from libcamera import …` / `from picamera2… import …` look; fresh state per test."""
    state = PiState()
    monkeypatch.setattr(Picamera2, "state", state)
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = Transform  # type: ignore[attr-defined]
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = Picamera2  # type: ignore[attr-defined]
    picamera2.MappedArray = MappedArray  # type: ignore[attr-defined]
    picamera2.__path__ = []  # a package, so its submodules import
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = H264Encoder  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = Output  # type: ignore[attr-defined]
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform  # type: ignore[attr-defined]
    platform.get_platform = lambda: state.platform  # type: ignore[attr-defined]
    picamera2.encoders, picamera2.outputs, picamera2.platform = encoders, outputs, platform  # type: ignore[attr-defined]
    for name, module in (("libcamera", libcamera), ("picamera2", picamera2), ("picamera2.encoders", encoders),
                         ("picamera2.outputs", outputs), ("picamera2.platform", platform)):
        monkeypatch.setitem(sys.modules, name, module)
    return state
