"""What every service process shares: logging, a stop signal, a heartbeat for `ezrec health`, and the operator's
device actions (`attach`): its recent warnings published for the dashboard, and commands from the API obeyed.

A restart is the service stopping exactly as on SIGTERM and exiting with RESTART_EXIT_CODE; whatever supervises
it starts it again: `ezrec up` at once, Docker through the compose file's `restart: unless-stopped` (which
restarts a container whatever its exit code). Nothing here touches the Docker socket or runs a shell.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from shared import health
from shared.atomic import write_text_atomic
from shared.health import HEARTBEAT_EVERY_S
from shared.logs import broker_passwords_in_env, setup_logging
from shared.payloads import CommandAck, ServiceCommand, ServiceLogs
from shared.recent_logs import RecentLogs
from shared.settings import Settings
from shared.timeutil import utc_now

if TYPE_CHECKING:
    from shared.bus import MqttBus

log = logging.getLogger(__name__)

RESTART_EXIT_CODE = 75
"""EX_TEMPFAIL: "try again". A service restarted by the operator exits with it, after a clean stop. Not 0, so a
supervisor that restarts only failures (systemd's Restart=on-failure, Docker's on-failure) restarts it too;
compose's `unless-stopped` restarts any exit; `ezrec up` restarts it at once, without its crash backoff."""
COMMAND_MAX_AGE_S = 60.0
"""A command older than this is ignored: one queued for a service that was down (persistent sessions keep QoS 1
messages) must not restart it long after the operator pressed the button."""
COMMAND_MAX_AHEAD_S = 10.0
"""A command dated further ahead than this (another host's clock) is ignored too."""
LOGS_PUBLISH_DELAY_S = 1.0
"""A burst of warnings becomes one publish: the list is sent this long after the first new record."""
Action = Callable[[ServiceCommand], str]
"""A service's own command (e.g. the status service's `snapshot`): does it, returns what it did."""

_restart_requested = threading.Event()


def exit_code(code: int) -> int:
    """The process's exit code: RESTART_EXIT_CODE once the operator asked it to restart, else `code`."""
    return RESTART_EXIT_CODE if _restart_requested.is_set() and code == 0 else code


def secrets_of(settings: Settings) -> list[str]:
    """What logs must never show: the settings' secrets and any broker password in the environment."""
    return [*settings.secret_values(), *broker_passwords_in_env()]


class ServiceRuntime:
    def __init__(self, service: str, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.stop = threading.Event()
        self.started_at = utc_now()
        self._signals: SignalLatch | None = None
        self._stop_hook: Callable[[], None] = self.request_stop
        self._actions: dict[str, Action] = {}
        self._bus: MqttBus | None = None
        self.instance: str | None = None
        settings.ensure_dirs()
        secrets = secrets_of(settings)
        setup_logging(service, settings.log_level, secrets)
        self._logs_due = threading.Event()
        self._force_logs = False
        self._handled: dict[str, None] = {}  # request ids already answered, oldest first
        self.recent = RecentLogs(secrets, on_record=self._logs_due.set)
        logging.getLogger().addHandler(self.recent)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the service; run_until_stopped() acts on them (see SignalLatch)."""
        self._signals = SignalLatch((signal.SIGTERM, signal.SIGINT))

    def request_stop(self) -> None:
        """Stop as a signal would (run_until_stopped acts on it at once)."""
        self.stop.set()
        if self._signals is not None:
            self._signals.wake()

    # ---- the operator's device actions ---------------------------------------------------------------

    def attach(self, bus: MqttBus, *, stop: Callable[[], None] | None = None,
               actions: dict[str, Action] | None = None) -> None:
        """Before bus.start(): obey the API's commands for this service and publish its recent warnings and errors
        (retained on ezrec/<camera>/<service>/logs, kept across restarts in DATA_DIR/state). `stop` replaces the
        default way to stop (the API stops its uvicorn server); `actions` adds the service's own commands."""
        self._bus = bus
        suffix = bus.client_id.removeprefix(f"ezrec-{self.settings.camera_id}-{self.service}").lstrip("-")
        self.instance = suffix or None  # a named worker (WORKER_ID): its own logs topic and file
        name = self.service + (f"-{self.instance}" if self.instance else "")
        self.recent.path = self.settings.state_dir / f"logs-{name}.json"
        self.recent.reload()
        if stop is not None:
            self._stop_hook = stop
        self._actions.update(actions or {})
        bus.subscribe(bus.topics.command(self.service), ServiceCommand, self._on_command)
        self._logs_due.set()  # the list as it stands (kept from the last run) once connected
        atexit.register(self.recent.save, force=True)
        threading.Thread(target=self._publish_logs_loop, name="recent-logs", daemon=True).start()

    def close(self) -> None:
        """Stop publishing and capturing (a process that ends needs none of this; tests that run several do)."""
        self.stop.set()
        self._logs_due.set()
        logging.getLogger().removeHandler(self.recent)
        self.recent.save(force=True)

    @property
    def restart_requested(self) -> bool:
        return _restart_requested.is_set()

    def logs_payload(self) -> ServiceLogs:
        return ServiceLogs(camera_id=self.settings.camera_id, service=self.service,  # type: ignore[arg-type]
                           instance=self.instance, pid=os.getpid(), records=self.recent.records())

    def _publish_logs_loop(self) -> None:
        """Publishes the list (retained) when it changed, only while connected: a warning storm while the broker is
        away must not fill the bus outbox with copies of a 30 KB list; the latest goes out after the reconnect."""
        bus = self._bus
        assert bus is not None
        published = -1
        was_connected = False
        while not self.stop.is_set():
            self._logs_due.wait(5.0)
            if self.stop.is_set():
                break
            if not bus.connected.is_set():
                was_connected = False
                self.stop.wait(1.0)
                continue
            if not was_connected:  # (re)connected: the broker may have lost the retained copy, send it again
                published, was_connected = -1, True
            self.stop.wait(LOGS_PUBLISH_DELAY_S)  # let a burst finish
            self._logs_due.clear()
            version = self.recent.version
            if version != published or self._force_logs:
                self._force_logs = False
                try:
                    bus.publish(bus.topics.logs(self.service, self.instance), self.logs_payload(), retain=True)
                    published = version
                except Exception:  # the outbox is on a full disk, say: try again with the next record
                    log.exception("could not publish the recent log records")
            self.recent.save()

    def _ack(self, command: ServiceCommand, outcome: str, detail: str) -> None:
        bus = self._bus
        assert bus is not None
        bus.publish(bus.topics.command_ack(self.service), CommandAck(
            camera_id=self.settings.camera_id, service=self.service, instance=self.instance,  # type: ignore[arg-type]
            request_id=command.request_id, action=command.action, outcome=outcome,  # type: ignore[arg-type]
            detail=detail[:300], pid=os.getpid()))

    def _on_command(self, _topic: str, command: ServiceCommand) -> None:
        """paho's thread: check, answer, act (acting is quick: a flag, an event, a publish). A copy of a command
        already handled (QoS 1 redelivery, or one copy per matching subscription: the API also subscribes to
        ezrec/<camera>/#) is dropped without a second answer."""
        if command.request_id in self._handled:
            return
        self._handled[command.request_id] = None
        while len(self._handled) > 256:
            self._handled.pop(next(iter(self._handled)))
        now = utc_now()
        if command.camera_id != self.settings.camera_id or command.service != self.service:
            log.warning("command %s for %s/%s ignored: this is %s/%s", command.request_id, command.camera_id,
                        command.service, self.settings.camera_id, self.service)
            self._ack(command, "refused", f"sent to {command.camera_id}/{command.service}")
            return
        age = (now - command.sent_at).total_seconds()
        if age > COMMAND_MAX_AGE_S or age < -COMMAND_MAX_AHEAD_S:
            log.warning("command %s (%s) ignored: sent %.0f s ago", command.request_id, command.action, age)
            self._ack(command, "ignored", f"sent {age:.0f} s ago; commands older than {COMMAND_MAX_AGE_S:.0f} s "
                      "(or dated ahead) are not obeyed")
            return
        if command.action == "restart":
            if command.sent_at < self.started_at - timedelta(seconds=1):
                # Redelivered after the restart it asked for (its PUBACK lost with the old process): done already.
                self._ack(command, "ignored", "sent before this process started: already restarted")
                return
            log.warning("restarting on the operator's request %s%s", command.request_id,
                        f": {command.reason}" if command.reason else "")
            _restart_requested.set()
            self._ack(command, "accepted", f"{self.service} (pid {os.getpid()}) stops cleanly and exits with "
                      f"{RESTART_EXIT_CODE}; its supervisor starts it again")
            self._stop_hook()
            return
        if command.action == "publish_logs":
            self._force_logs = True
            self._logs_due.set()
            self._ack(command, "done", f"{len(self.recent.records())} record(s) published")
            return
        action = self._actions.get(command.action)
        if action is None:
            self._ack(command, "refused", f"the {self.service} service has no {command.action!r} action")
            return
        try:
            detail = action(command)
        except Exception as exc:
            log.exception("command %s (%s) failed", command.request_id, command.action)
            self._ack(command, "refused", f"{type(exc).__name__}: {exc}")
            return
        log.info("command %s (%s): %s", command.request_id, command.action, detail)
        self._ack(command, "done", detail)

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

    def wake(self) -> None:
        """Wake wait() without a signal (the operator's restart stops the service as SIGTERM would)."""
        with contextlib.suppress(OSError):
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
