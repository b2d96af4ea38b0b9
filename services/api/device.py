"""What the API knows of the four services, for the operator's device actions: availability, recent warnings and
errors (their retained `logs` messages), and the answers to the commands it sent (shared/runtime.py obeys them).

Fed by the /events relay (validated messages only), on paho's thread; read by request threads, which may wait
for a command's answer or for the next status snapshot."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime

from pydantic import BaseModel

from shared.bus import MqttBus
from shared.health import HEARTBEAT_STALE_S
from shared.payloads import CommandAck, OperatorAction, ServiceCommand, ServiceLogs, StatusSnapshot
from shared.settings import Settings
from shared.timeutil import utc_now
from shared.topics import SERVICES, Topics

ACKS_KEPT = 256


def new_request_id() -> str:
    return f"op-{secrets.token_hex(6)}"


class DeviceWatch:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.camera_id)
        self._cond = threading.Condition()
        self.availability: dict[str, str] = {}
        self.logs: dict[tuple[str, str | None], ServiceLogs] = {}
        self._acks: OrderedDict[str, CommandAck] = OrderedDict()
        self.status: StatusSnapshot | None = None

    def observe(self, topic: str, message: BaseModel | str, _retained: bool) -> None:
        """A relayed message (EventHub listener)."""
        with self._cond:
            if isinstance(message, str):
                service = topic.split("/")[2]
                if service in SERVICES:
                    self.availability[service] = message
            elif isinstance(message, ServiceLogs):
                self.logs[(message.service, message.instance)] = message
            elif isinstance(message, CommandAck):
                self._acks[message.request_id] = message
                self._acks.move_to_end(message.request_id)
                while len(self._acks) > ACKS_KEPT:
                    self._acks.popitem(last=False)
            elif isinstance(message, StatusSnapshot):
                self.status = message
            else:
                return
            self._cond.notify_all()

    def wait_ack(self, request_id: str, timeout: float) -> CommandAck | None:
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._acks, timeout)
            return self._acks.get(request_id)

    def wait_status_after(self, since: datetime, timeout: float) -> StatusSnapshot | None:
        with self._cond:
            self._cond.wait_for(lambda: self.status is not None and self.status.collected_at >= since, timeout)
            status = self.status
        return status if status is not None and status.collected_at >= since else None

    def heartbeat(self, service: str) -> tuple[int | None, float | None]:
        """(pid, age in seconds) from the service's heartbeat file, when it has a fresh one on this DATA_DIR."""
        try:
            data = json.loads((self.settings.state_dir / f"heartbeat-{service}.json").read_text())
            age = time.time() - float(data["at"])
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, None
        return (pid, age) if age <= HEARTBEAT_STALE_S else (None, age)

    def logs_of(self, service: str) -> list[ServiceLogs]:
        with self._cond:
            return [logs for (name, _), logs in sorted(self.logs.items(), key=lambda kv: str(kv[0]))
                    if name == service]

    def send(self, bus: MqttBus, service: str, action: str, reason: str | None) -> ServiceCommand:
        command = ServiceCommand(camera_id=self.settings.camera_id, service=service,  # type: ignore[arg-type]
                                 action=action, request_id=new_request_id(), reason=reason)  # type: ignore[arg-type]
        bus.publish(self.topics.command(service), command)
        return command

    def record(self, bus: MqttBus, action: str, target: str, outcome: str, detail: str) -> OperatorAction:
        event = OperatorAction(camera_id=self.settings.camera_id, action=action, target=target,  # type: ignore[arg-type]
                               outcome=outcome[:32], detail=detail[:1000], sent_at=utc_now())
        bus.publish(self.topics.operator_action, event)
        return event
