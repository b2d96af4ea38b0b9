"""`ezrec up`: the four services as child processes, restarted if they die, stopped together.

A child that exits with RESTART_EXIT_CODE was restarted by the operator (an MQTT command from the API, see
shared/runtime.py): it is started again at once, without the crash backoff, and logged as what it is."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from shared.runtime import RESTART_EXIT_CODE, SignalLatch

log = logging.getLogger(__name__)

SERVICES = ("api", "recorder", "worker", "status")
RESTART_BACKOFF_S = (1, 2, 5, 10, 30)
STOP_GRACE_S = 15.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


def _spawn(name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.cli", name], env=os.environ.copy())


def supervise(services: tuple[str, ...] = SERVICES) -> int:
    signals = SignalLatch((signal.SIGINT, signal.SIGTERM))  # handlers that take no lock (see SignalLatch)
    children = {name: Child(name, _spawn(name)) for name in services}
    log.info("started %s", ", ".join(f"{c.name} (pid {c.process.pid})" for c in children.values()))
    next_start: dict[str, float] = {}
    requested: set[str] = set()
    while (signum := signals.wait(0.5)) is None:
        for child in children.values():
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                if code == RESTART_EXIT_CODE:
                    log.info("%s (pid %s) stopped for the operator's restart; starting it again", child.name,
                             child.process.pid)
                    child.process = None
                    next_start[child.name] = 0.0
                    requested.add(child.name)
                else:
                    if time.monotonic() - child.started_at > 60:
                        child.restarts = 0  # it had been running fine: start the backoff again
                    delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                    log.error("%s exited with %s; restarting in %ss", child.name, code, delay)
                    child.process = None
                    next_start[child.name] = time.monotonic() + delay
            if child.process is None and time.monotonic() >= next_start.get(child.name, 0):
                child.process = _spawn(child.name)
                if child.name in requested:
                    requested.discard(child.name)  # not a crash: the backoff is not advanced
                else:
                    child.restarts += 1
                child.started_at = time.monotonic()
    log.info("received %s: stopping all services", signal.Signals(signum).name)
    _stop_all([c.process for c in children.values() if c.process is not None])
    return 0


def _stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %s did not stop in %.0fs; killing it", process.pid, STOP_GRACE_S)
            process.kill()
            process.wait()
