"""kill -9 of the real recorder process mid-booking, then a restart while the booking is still on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from shared.models import BookingIn, BookingStatus
from shared.recordings.layout import BookingDir
from shared.schedule_cache import write_snapshot
from shared.store import LocalStore
from shared.timeutil import utc_now
from tests.recorder.conftest import decoded_frames, frame_times, recording, wait_until, whole_second

ROOT = Path(__file__).resolve().parents[2]
FPS = 15
SEGMENT_S = 2.0
BOOKING_S = 10


def _recorder(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", "recorder"], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_kill_9_mid_booking_then_restart_gives_one_continuous_video(tmp_path, running_broker, camera_id, listen):
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "API_", "CAMERA_", "DATA_"))},
        "PYTHONPATH": str(ROOT), "DATA_DIR": str(data), "CAMERA_ID": camera_id,
        "MQTT_PORT": str(running_broker.port), "CAMERA_WIDTH": "320", "CAMERA_HEIGHT": "240",
        "CAMERA_FPS": str(FPS), "CAMERA_WARMUP_S": "0.5", "SEGMENT_SECONDS": str(SEGMENT_S),
        "BOOKING_CHECK_INTERVAL": "1", "LOG_LEVEL": "INFO",
    }
    finished = listen(f"ezrec/{camera_id}/recording/finished")
    store = LocalStore(data)
    start = whole_second(1.5)
    end = start + timedelta(seconds=BOOKING_S)
    store.create_bookings([BookingIn(id="crash", user_id="u1", start_time=start, end_time=end)], camera_id)
    write_snapshot(data / "bookings.json", camera_id, store.list_bookings())
    log = tmp_path / "recorder.log"
    booking_dir = BookingDir(data / "recordings" / "raw", "crash")

    first = _recorder(env, tmp_path, log)
    second = None
    try:
        # Kill when two segments are closed and the third is 1.6 s (more than one GOP) into its 2 s.
        assert wait_until(lambda: len(booking_dir.segments()) >= 3, timeout=30), log.read_text()[-3000:]
        time.sleep(1.6)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        killed_at = utc_now()
        assert killed_at < end - timedelta(seconds=3), "the machine is too slow for this test's timing"
        survivors = booking_dir.segments()
        assert decoded_frames(survivors[0]) > 0, "segments already written stay playable after a kill -9"

        second = _recorder(env, tmp_path, log)
        _, payload = finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "crash", timeout=40)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)

    manifest = json.loads(payload)
    video = recording(data / "recordings" / "raw" / "crash.mp4")
    times = frame_times(video)
    step = timedelta(seconds=1 / FPS)
    assert abs(times[0] - start) < step / 2, "the first frame is still the booking's start"
    assert abs(times[-1] - (end - step)) < step / 2, "the restarted recorder recorded to the end"
    before = [t for t in times if t < killed_at]
    after = [t for t in times if t > killed_at]
    assert before and after, "footage from both runs is in the one file"
    assert killed_at - before[-1] <= timedelta(seconds=SEGMENT_S + 1), "at most the last segment's worth is lost"
    assert before[-1] >= start + timedelta(seconds=2 * SEGMENT_S), \
        "the segment cut by the kill keeps its complete fragments (one per GOP)"
    print(f"lost {(killed_at - before[-1]).total_seconds():.2f}s before the kill; resumed "
          f"{(after[0] - killed_at).total_seconds():.2f}s after it")
    assert manifest["frames"] == len(times) == decoded_frames(video), "one continuous, fully decodable video"
    assert manifest["segments"] >= 3
    assert sorted(times) == times and len(set(times)) == len(times)
    assert wait_until(lambda: store.get_booking("crash").status == BookingStatus.completed)
    assert booking_dir.read_finished() is not None and booking_dir.read_finished().frames == len(times), \
        "the segments stay, marked finished, until the worker has uploaded the video"
