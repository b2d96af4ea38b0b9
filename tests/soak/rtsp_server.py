"""A real RTSP camera for the soak: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0, through
python3-gi) serving a live test pattern as H.264, like an IP camera. Run with Debian's python3 (the one that
has `gi`), not the project's venv:

    /usr/bin/python3 tests/soak/rtsp_server.py --port P --size 320x240 --fps 15

The soak kills it (-9) and starts it again to make the camera vanish, and stops it (SIGSTOP) to freeze it:
the connection stays open and no frame comes, as a hung camera does."""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--path", default="/cam")
    args = parser.parse_args()
    width, height = args.size.split("x")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # one keyframe a second (the recorder cuts segments on keyframes); zerolatency: no B-frames, as cameras send
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={args.fps}/1,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={args.fps} bitrate=400 ! video/x-h264,profile=constrained-baseline ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
