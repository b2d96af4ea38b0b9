"""The MQTT bus every service uses: persistent session, availability, durable publishes, safe handlers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ValidationError

from shared.outbox import Outbox
from shared.payloads import DeadLetter, Payload
from shared.settings import Settings
from shared.topics import DEADLETTER, Topics

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[str, Any], None]

ONLINE, OFFLINE = "online", "offline"
_DEADLETTER_PAYLOAD_LIMIT = 4096
_MAX_INFLIGHT = 100


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    match_filter: str
    model: type[BaseModel] | None
    handler: Handler
    with_retain: bool = False
    empty_ok: bool = False


def _match_filter(topic_filter: str) -> str:
    """`$share/group/a/b` matches topics like `a/b`."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


class MqttBus:
    """paho-mqtt 2.x, MQTT v5, QoS 1, fixed client id and a persistent session.

    publish() first writes to a SQLite outbox; a flusher hands rows to paho only while
    connected and deletes them on PUBACK, so a broker outage or a crash loses nothing.
    """

    def __init__(
        self,
        settings: Settings,
        service: str,
        *,
        client_id: str | None = None,
        outbox_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.topics = Topics(settings.camera_id)
        self.availability_topic = self.topics.availability(service)
        self.client_id = client_id or f"ezrec-{settings.camera_id}-{service}"
        self.outbox = Outbox(outbox_path or settings.state_dir / f"outbox-{self.client_id}.db")
        self.connected = threading.Event()
        self._subs: list[_Subscription] = []
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._last_handed = 0
        self._flusher: threading.Thread | None = None

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            client.username_pw_set(settings.mqtt_username, password)
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # ---- lifecycle -------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, model: type[P], handler: Callable[[str, P], None]) -> None:
        """Register before start(); handlers run on paho's thread, so they must persist and return fast."""
        self._subs.append(_Subscription(topic_filter, _match_filter(topic_filter), model, handler))

    def subscribe_text(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """For plain-text topics (availability: `online`/`offline`, the Home Assistant convention)."""
        self._subs.append(_Subscription(topic_filter, _match_filter(topic_filter), None, handler))

    def subscribe_retained(self, topic_filter: str, handler: Callable[[str, bytes, bool], None], *,
                           empty_ok: bool = False) -> None:
        """Bytes plus the retain flag as the publisher set it (MQTT v5 Retain As Published), so a live message
        that was published retained (a will, a `online`, a snapshot) is told apart from a plain one.
        `empty_ok`: empty payloads reach the handler too (a bare button press), not only non-empty ones."""
        self._subs.append(_Subscription(topic_filter, _match_filter(topic_filter), None, handler, with_retain=True,
                                        empty_ok=empty_ok))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        self._client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=15,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"{self.service}-outbox", daemon=True)
        self._flusher.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: drain what we can, say `offline`, disconnect (so the will is not needed)."""
        self.wait_drained(timeout)
        if self.connected.is_set():
            info = self._client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
        if self._flusher:
            self._flusher.join(timeout=2)
        self.outbox.close()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def wait_drained(self, timeout: float) -> bool:
        """True once every durable publish has been acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while self.outbox.pending_count() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.outbox.pending_count() == 0

    # ---- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: Payload | BaseModel, *, retain: bool = False) -> None:
        """Durable QoS 1 publish: returns once the message is on disk, not once it is on the broker."""
        self.outbox.add(topic, payload.model_dump_json().encode(), 1, retain)
        with self._wake:
            self._wake.notify_all()

    def reassert_online(self) -> None:
        """Say `online` again. Processes that share one availability topic (scaled-out workers) overwrite
        each other's retained state: one's last will must not leave the others marked offline for long."""
        if self.connected.is_set():
            self._client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def publish_transient(self, topic: str, payload: BaseModel) -> None:
        """QoS 0, not kept while offline: for progress ticks where only the latest matters."""
        if self.connected.is_set():
            self._client.publish(topic, payload.model_dump_json(), qos=0)

    def _flush_loop(self) -> None:
        """Hand rows to paho in order while connected; delete each once its PUBACK has arrived.

        Completion is read from MQTTMessageInfo rather than matched by mid in on_publish:
        paho calls on_publish under its own lock, and mids are reused, so polling is the race-free way.
        """
        inflight: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        while not self._stop.is_set():
            still: list[tuple[int, mqtt.MQTTMessageInfo]] = []
            for row_id, info in inflight:
                if info.is_published():
                    self.outbox.done(row_id)
                else:
                    still.append((row_id, info))
            inflight = still
            handed = 0
            if self.connected.is_set() and len(inflight) < _MAX_INFLIGHT:
                for row in self.outbox.pending_after(self._last_handed, _MAX_INFLIGHT - len(inflight)):
                    if not self.connected.is_set() or self._stop.is_set():
                        break
                    info = self._client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                        log.warning("publish to %s refused locally (rc=%s); will retry", row.topic, info.rc)
                        break
                    # paho keeps a handed message and resends it after a reconnect: it counts as handed.
                    self._last_handed = row.id
                    inflight.append((row.id, info))
                    handed += 1
            if handed == 0:
                with self._wake:
                    self._wake.wait(timeout=0.02 if inflight else 1.0)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code is not None and reason_code.is_failure:
            log.error("broker refused a publish (mid %s): %s", mid, reason_code)

    # ---- connection ------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        log.info("connected to MQTT %s:%s as %s (session present: %s)", self.settings.mqtt_host,
                 self.settings.mqtt_port, self.client_id, getattr(flags, "session_present", None))
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        for sub in self._subs:
            client.subscribe(sub.topic_filter, options=SubscribeOptions(qos=1, retainAsPublished=sub.with_retain))
        self.connected.set()
        with self._wake:
            self._wake.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                       properties: Properties | None) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    # ---- receiving -------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        for sub in self._subs:
            if not msg.payload and not sub.empty_ok:
                continue  # a cleared retained message
            if mqtt.topic_matches_sub(sub.match_filter, msg.topic):
                self._dispatch(sub, msg)

    def _dispatch(self, sub: _Subscription, msg: mqtt.MQTTMessage) -> None:
        payload: Any = msg.payload
        if sub.model is not None:
            try:
                payload = sub.model.model_validate_json(msg.payload)
            except ValidationError as exc:
                self._dead_letter(msg, f"invalid {sub.model.__name__}: {_short_errors(exc)}")
                return
        try:
            if sub.with_retain:
                sub.handler(msg.topic, payload, bool(msg.retain))
            else:
                sub.handler(msg.topic, payload)
        except Exception as exc:  # a handler bug must not take the subscriber down
            log.exception("handler for %s failed", msg.topic)
            self._dead_letter(msg, f"handler error: {type(exc).__name__}: {exc}")

    def _dead_letter(self, msg: mqtt.MQTTMessage, error: str) -> None:
        log.warning("set aside message on %s: %s", msg.topic, error)
        if msg.topic == DEADLETTER:
            return
        text = msg.payload[:_DEADLETTER_PAYLOAD_LIMIT].decode("utf-8", errors="replace")
        self.publish(DEADLETTER, DeadLetter(topic=msg.topic, service=self.service, error=error, payload=text))


def _short_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)
