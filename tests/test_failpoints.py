"""shared/failpoints.py: inert when its variables are unset; a crash point kills its process, by SIGKILL, exactly
the n-th time it is reached. Run in child processes, as the crash tests use it (the variable is read at import)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from shared import failpoints

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = """
from shared import failpoints
for i in (1, 2, 3):
    failpoints.reached("after_row")
    failpoints.frame_encoded()
    print(i, flush=True)
"""


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EZREC_TEST_")}
    return subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_unset_every_point_is_passed():
    done = _run()
    assert (done.returncode, done.stdout.split()) == (0, ["1", "2", "3"]), done.stderr


def test_a_crash_point_kills_the_nth_time_it_is_reached():
    done = _run(**{failpoints.CRASH_ENV: "after_row:2"})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1"], "killed at the second pass, not before or after"
    first = _run(**{failpoints.CRASH_ENV: "encode"})
    assert (first.returncode, first.stdout) == (-signal.SIGKILL, ""), "no count: the first time"


def test_another_point_named_leaves_this_one_inert():
    done = _run(**{failpoints.CRASH_ENV: "join"})
    assert (done.returncode, done.stdout.split()) == (0, ["1", "2", "3"]), done.stderr


def test_the_freeze_file_holds_only_while_it_exists(tmp_path, monkeypatch):
    monkeypatch.delenv(failpoints.FREEZE_ENV, raising=False)
    assert failpoints.camera_freeze_file() is None
    failpoints.hold_while_frozen(None)  # returns at once
    freeze = tmp_path / "freeze"
    monkeypatch.setenv(failpoints.FREEZE_ENV, str(freeze))
    assert failpoints.camera_freeze_file() == freeze
    failpoints.hold_while_frozen(freeze)  # no file: not frozen
    freeze.touch()
    held = threading.Thread(target=failpoints.hold_while_frozen, args=(freeze,), daemon=True)
    held.start()
    held.join(0.3)
    assert held.is_alive(), "returned while the freeze file exists"
    freeze.unlink()
    held.join(10)
    assert not held.is_alive(), "still held once the freeze file is gone"
