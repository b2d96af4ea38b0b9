"""Found by the soak (seed 1, issue 13): an RTSP camera frozen for 3.2 s with CAMERA_STALL_S=2 was never reported.

FFmpeg's RTSP demuxer holds the last packet of a stream until the next one arrives; when the read timed out, it
handed that stale packet over. The read timeout was CAMERA_STALL_S, started a moment before the watchdog's, so
the stale packet always reset the watchdog just before it fired: a freeze shorter than twice the stall time went
unnoticed, and a longer one surfaced as a camera_error ("Immediate exit requested"), not camera_stall. The
watchdog (CameraFeed) owns the stall verdict; a network read times out only later, to free an abandoned thread.

A real RTSP server (GStreamer's, the soak's: scripts/system-deps.sh rtsp), frozen with SIGSTOP as a hung camera.
"""

from __future__ import annotations

import time

import pytest

from services.recorder.camera import CameraStalled
from services.recorder.feed import CameraFeed
from services.recorder.pyav_cameras import NetworkCamera
from tests.soak.stack import RtspCamera

STALL_S = 1.0


@pytest.fixture
def rtsp_camera(tmp_path):
    why_not = RtspCamera.available()
    assert why_not is None, why_not
    camera = RtspCamera(tmp_path / "rtsp.log")
    camera.start()
    yield camera
    camera.kill()


def test_an_rtsp_camera_frozen_longer_than_the_stall_time_is_reported_as_a_stall(rtsp_camera):
    feed = CameraFeed(NetworkCamera(rtsp_camera.url, 15, STALL_S), STALL_S).start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # flowing: the stream's opening burst is behind us
            feed.get()
        rtsp_camera.freeze()
        frozen = time.monotonic()
        outcome = "frames flowed through the freeze"
        try:
            while time.monotonic() - frozen < 1.6 * STALL_S:  # frozen for between one and two stall times
                item = feed.get()
                if time.monotonic() - frozen > 0.5 * STALL_S:
                    outcome = f"a packet captured {item.captured_at} handed over {time.monotonic() - frozen:.2f}s in"
            rtsp_camera.thaw()
            while time.monotonic() - frozen < 3 * STALL_S:
                feed.get()
        except CameraStalled:
            outcome = f"stalled {time.monotonic() - frozen:.2f}s in"
        assert outcome.startswith("stalled"), outcome
        assert float(outcome.split()[1].removesuffix("s")) < 1.6 * STALL_S, outcome
    finally:
        rtsp_camera.thaw()
        feed.close()
