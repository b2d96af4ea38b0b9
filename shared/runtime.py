"""What every service process shares: logging, a stop signal, a heartbeat for `ezrec health`."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared import health
from shared.atomic import write_text_atomic
from shared.health import HEARTBEAT_EVERY_S
from shared.logs import setup_logging
from shared.settings import Settings

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(self, service: str, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.stop = threading.Event()
        settings.ensure_dirs()
        setup_logging(service, settings.log_level, settings.secret_values())

    def install_signal_handlers(self) -> None:
        def _handle(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)

    @property
    def heartbeat_path(self) -> Path:
        return heartbeat_path(self.settings, self.service)

    def beat(self, **details: object) -> None:
        payload = {"pid": os.getpid(), "at": time.time(), **details}
        write_text_atomic(self.heartbeat_path, json.dumps(payload))

    def start_heartbeat(self, details: Callable[[], dict] | None = None) -> threading.Thread:
        def _loop() -> None:
            while not self.stop.is_set():
                try:
                    self.beat(**(details() if details else {}))
                except Exception:
                    log.exception("heartbeat failed")
                self.stop.wait(HEARTBEAT_EVERY_S)

        thread = threading.Thread(target=_loop, name="heartbeat", daemon=True)
        thread.start()
        return thread

    def run_until_stopped(self, loop: Callable[[threading.Event], None], name: str,
                          on_stop: Callable[[], None] | None = None) -> None:
        """Run the service's loop in a thread until SIGTERM/SIGINT, then `on_stop` and wait for the loop.

        The main thread only waits: Python runs signal handlers there, and a main thread busy in a
        long C call (an encode, a socket read) would hold a stop back until it returned.
        """
        thread = threading.Thread(target=loop, args=(self.stop,), name=name)
        thread.start()
        while not self.stop.wait(1.0):
            pass
        if on_stop is not None:
            on_stop()
        thread.join()


def heartbeat_path(settings: Settings, service: str) -> Path:
    return settings.state_dir / f"heartbeat-{service}.json"


def heartbeat_fresh(settings: Settings, service: str) -> tuple[bool, str]:
    """The rule `ezrec health` applies (shared/health.py), for callers that hold Settings."""
    return health.heartbeat_fresh(settings.state_dir, service)
