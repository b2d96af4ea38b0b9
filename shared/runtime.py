"""What every service process shares: logging, a stop signal, a heartbeat for `ezrec health`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
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
        self._signals: SignalLatch | None = None
        settings.ensure_dirs()
        setup_logging(service, settings.log_level, settings.secret_values())

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the service; run_until_stopped() acts on them (see SignalLatch)."""
        self._signals = SignalLatch((signal.SIGTERM, signal.SIGINT))

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
        while not self.stop.is_set():
            if self._signals is None:
                self.stop.wait(1.0)
                continue
            signum = self._signals.wait(1.0)
            if signum is not None:
                log.info("received %s, stopping", signal.Signals(signum).name)
                self.stop.set()
        if on_stop is not None:
            on_stop()
        thread.join()


class SignalLatch:
    """Signal handlers that take no lock: they note the signal and write a byte to a pipe, nothing more.

    Python runs a handler between any two bytecodes of the main thread, also inside an earlier handler's
    Event.set() while that holds the event's non-reentrant lock: a handler that set the event itself
    (or logged) could wait forever for a lock its own thread holds. Ctrl-C under `ezrec up` delivers two
    signals at once (SIGINT from the terminal, SIGTERM from the supervisor), and the idle status service
    hung exactly so. The main thread sleeps in wait() and acts on the signal outside any handler.
    """

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.received: list[int] = []
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)  # list.append takes no lock that Python code could be holding
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending anyway
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> int | None:
        """The first signal received, as soon as there is one (at most `timeout` s); None until then."""
        if not self.received:
            select.select([self._read], [], [], timeout)  # retried after a handler ran (PEP 475): the byte wakes it
        with contextlib.suppress(OSError):
            while os.read(self._read, 512):
                pass
        return self.received[0] if self.received else None


def heartbeat_path(settings: Settings, service: str) -> Path:
    return settings.state_dir / f"heartbeat-{service}.json"


def heartbeat_fresh(settings: Settings, service: str) -> tuple[bool, str]:
    """The rule `ezrec health` applies (shared/health.py), for callers that hold Settings."""
    return health.heartbeat_fresh(settings.state_dir, service)
