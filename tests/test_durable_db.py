"""Services start together and open the same new SQLite files at once: none may fail doing so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPENERS = {  # (imports, done before the common start instant; the opening itself)
    "queue": ("from shared.durable_db import open_durable_db",
              "open_durable_db(path).execute('CREATE TABLE IF NOT EXISTS t (x)')"),
    "store": ("from shared.store import LocalStore", "LocalStore(path).list_bookings()"),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_eight_processes_opening_a_new_database_at_the_same_instant_all_succeed(tmp_path, kind):
    """Switching a new file to WAL fails at once with "database is locked" while another process does it
    (no busy wait): without the retry, a worker started beside another died at start-up."""
    target = tmp_path / ("jobs.db" if kind == "queue" else "data")
    go = time.time() + 2.0
    imports, opening = OPENERS[kind]
    code = (f"import sys, time\nfrom pathlib import Path\n{imports}\npath = Path(sys.argv[1])\n"
            f"while time.time() < {go}: pass\n{opening}\nprint('ok')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [proc.communicate(timeout=60) for proc in procs]
    failures = [err[-500:] for (out, err), proc in zip(results, procs, strict=True)
                if proc.returncode or "ok" not in out]
    assert not failures, failures
