#!/usr/bin/env bash
# Installs the Debian packages the tests and `make run` need, only when they are missing:
# mosquitto (a real broker for tests and local runs), ffmpeg (reference peer in tests and
# benchmarks; the product itself uses PyAV), docker-compose (static validation of compose files, and
# the stack in `make test-containers`), docker (docker.io: the engine for `make test-containers`),
# postgresql (initdb for tests/supabase where no PostgreSQL server answers), rtsp (GStreamer's RTSP server through
# python3-gi with x264enc: the soak's IP camera, tests/soak/rtsp_server.py).
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
for pkg in "$@"; do
  case "$pkg" in
    # chromium: the dashboard test (tests/api) drives Debian's browser with Playwright; it never downloads one.
    chromium) [ -x /usr/bin/chromium ] || need+=(chromium) ;;
    ffmpeg) command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg) ;;
    docker-compose) command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose) ;;
    # the daemon, not just a client: a docker CLI alone (some machines ship one) cannot build or run
    docker) command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || need+=(docker.io) ;;
    # tests/supabase use the PostgreSQL on 127.0.0.1:5432 when one answers, else start their own with initdb
    postgresql) command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql) ;;
    rtsp) /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None); assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')" >/dev/null 2>&1 \
            || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly) ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing missing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "please install as root: apt-get install -y ${need[*]}" >&2; exit 1
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
