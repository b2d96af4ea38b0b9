"""The status service: collect a snapshot, judge alerts, publish, store; announce itself to Home Assistant."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime

import psutil

from services.status import alerts
from services.status.availability import OFFLINE, UNKNOWN, Availability
from services.status.discovery import discovery_configs, present_fields
from services.status.metrics import Probes, device_model, system_metrics
from services.status.pipeline_tracker import PipelineTracker, count_queue
from services.status.reachability import cloud_reachable
from shared.bus import MqttBus
from shared.job_states import TABLE_FILE
from shared.models import SAFE_ID_PATTERN, SystemStatusRow
from shared.payloads import RecordingFinished, RecordingStarted, StatusSnapshot
from shared.settings import Settings
from shared.store import Store
from shared.timeutil import utc_now

log = logging.getLogger(__name__)
SAFE_ID = re.compile(SAFE_ID_PATTERN)

FIRST_SNAPSHOT_WAIT_S = 10.0
"""The first snapshot waits (at most this long, or one interval if that is shorter) until it knows."""
CPU_SAMPLE_S = 1.0
"""psutil's CPU reading covers the time since the previous call: right after start-up that window is a few
milliseconds of import burst (100 %). The first snapshot waits until it spans at least this long."""


class StatusService:
    def __init__(self, settings: Settings, store: Store, bus: MqttBus, *, probes: Probes | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.probes = probes or Probes()
        self.clock = clock
        self.services = Availability(settings)
        self.pipeline = PipelineTracker(settings.camera_id, settings.state_dir / "status-pipeline.json",
                                        settings.bookings_cache_path)
        self.thresholds = alerts.Thresholds(
            disk_free_gb=settings.alert_disk_free_gb, temperature_c=settings.alert_temperature_c,
            next_booking_minutes=settings.alert_next_booking_minutes, hold_s=settings.alert_hold_s)
        self.alerts_path = settings.state_dir / "status-alerts.json"
        self.book = alerts.load_book(self.alerts_path)
        self.model = device_model(self.probes.device_model)
        self._announced: frozenset[str] | None = None  # snapshot fields the published discovery covers
        self._was_connected = False
        self._now = threading.Event()  # the operator asked for a snapshot now (or the service is stopping)

    # ---- bus handlers (paho's thread: quick, no I/O beyond the outbox) ---------------------------

    @property
    def availability(self) -> dict[str, str]:
        """Each known service as judged now (see availability.py); `unknown` until a witness has spoken."""
        return self.services.judged()

    def on_availability(self, topic: str, payload: bytes, retained: bool) -> None:
        self.services.on_message(topic, payload, retained)

    def knows_enough(self) -> bool:
        """Connected, and every service judged by a heartbeat or a will."""
        return self.bus.connected.is_set() and UNKNOWN not in self.availability.values()

    def on_recording_started(self, topic: str, event: RecordingStarted) -> None:
        self.pipeline.on_recording_started(topic, event)

    def on_recording_finished(self, topic: str, event: RecordingFinished) -> None:
        self.pipeline.on_recording_finished(topic, event)

    def on_ha_status(self, _topic: str, payload: bytes) -> None:
        """Home Assistant restarted (birth message `online`): announce the entities again."""
        announced = self._announced
        if payload.strip() == b"online" and announced is not None:
            self.announce(announced)

    # ---- one round -------------------------------------------------------------------------------

    def collect(self) -> StatusSnapshot:
        now = self.clock()
        # Past the start-up wait, a service with neither a heartbeat nor a will has never run here: offline.
        services = {name: OFFLINE if state == UNKNOWN else state for name, state in self.availability.items()}
        view = self.pipeline.view(now, self._recorder_says())
        queue = count_queue(self.settings.raw_dir, self.settings.processed_dir, self.settings.state_dir / TABLE_FILE)
        try:
            in_outbox = self.store.videos_waiting_for_upload()
        except Exception:  # a store hiccup must not cost the rest of the snapshot
            log.exception("counting the store's queued uploads failed")
            in_outbox = 0
        try:
            cloud_problems = self.store.cloud_problems()
        except Exception:
            log.exception("reading the cloud outbox's refused writes and faults failed")
            cloud_problems = None
        return StatusSnapshot(
            camera_id=self.settings.camera_id,
            collected_at=now,
            **system_metrics(self.settings.data_dir, self.probes),
            services=services,
            broker_connected=self.bus.connected.is_set(),
            cloud_reachable=cloud_reachable(self.settings.supabase_url),
            recording_now=view.recording_now,
            current_booking=view.current_booking,
            next_booking=view.next_booking,
            camera_fault=view.camera_fault,
            last_errors=view.last_errors,
            jobs_waiting=queue.jobs_waiting,
            segments_waiting=queue.segments_waiting,
            uploads_pending=queue.uploads_pending + in_outbox,
            cloud_problems=cloud_problems,
        )

    def _recorder_says(self) -> tuple[str | None] | None:
        """What the recorder's fresh heartbeat says it records (written every 5 s), else None."""
        beat = self.services.heartbeat("recorder")
        if beat is None or not beat.fresh or "recording" not in beat.details:
            return None
        recording = beat.details["recording"]
        return (recording if isinstance(recording, str) and SAFE_ID.fullmatch(recording) else None,)

    def judge(self, snapshot: StatusSnapshot) -> StatusSnapshot:
        """Raise or clear alerts (published once, durably) and note the active ones in the snapshot."""
        found = alerts.checks(snapshot, self.thresholds, set(self.book.raised()))
        book, events = alerts.evaluate(found, self.book, snapshot.collected_at, self.settings.camera_id)
        for event in events:
            log.warning("alert %s %s: %s", event.id, event.state, event.message)
            self.bus.publish(self.bus.topics.alerts, event)
        if book != self.book:
            try:
                alerts.save_book(self.alerts_path, book)
            except OSError:
                log.exception("could not save alert state; it is kept in memory")
            self.book = book
        return snapshot.model_copy(update={"alerts_active": book.raised()})

    def announce(self, present: frozenset[str]) -> None:
        for topic, config in discovery_configs(self.settings.camera_id, self.settings.ha_discovery_prefix,
                                               present, self.model):
            self.bus.publish(topic, config, retain=True)
        self._announced = present

    def tick(self) -> StatusSnapshot:
        snapshot = self.judge(self.collect())
        connected = self.bus.connected.is_set()
        if connected:
            # Only while connected: hours of stale snapshots must not queue up for a burst on reconnect.
            self.bus.publish(self.bus.topics.status, snapshot, retain=True)
            present = present_fields(snapshot)
            if self.settings.ha_discovery and (present != self._announced or not self._was_connected):
                self.announce(present)  # first round, a new field (e.g. cloud configured), or a reconnect
        self._was_connected = connected
        try:
            self.store.put_system_status(SystemStatusRow(
                camera_id=snapshot.camera_id, collected_at=snapshot.collected_at,
                snapshot=snapshot.model_dump(mode="json")))
        except Exception:
            log.exception("could not store system status; will try again next interval")
        return snapshot

    def request_snapshot(self, _command: object = None) -> str:
        """The operator's `snapshot` command (paho's thread): the loop collects and publishes one at once."""
        self._now.set()
        return f"collecting a snapshot now; it follows on {self.bus.topics.status}"

    def wake(self) -> None:
        """On stop: end the wait between snapshots at once."""
        self._now.set()

    def run(self, stop: threading.Event) -> None:
        self.wait_until_it_knows(stop)
        while not stop.is_set():
            self._now.clear()
            try:
                self.tick()
            except Exception:
                log.exception("status collection failed")
            self._pause(stop)

    def _pause(self, stop: threading.Event) -> None:
        """Until the next snapshot is due, the operator asks for one, or `stop` is set (seen within a second even
        when nobody calls wake(), as for a caller that only sets the event)."""
        deadline = time.monotonic() + self.settings.system_status_interval
        while not stop.is_set() and not self._now.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._now.wait(min(remaining, 1.0))

    def wait_until_it_knows(self, stop: threading.Event) -> None:
        """The first snapshot is retained for a whole interval: publish it only once it is true. Waits until
        connected with every service judged and a CPU sample of at least CPU_SAMPLE_S, but no longer than
        FIRST_SNAPSHOT_WAIT_S (or one interval, if shorter; never under CPU_SAMPLE_S)."""
        primed = time.monotonic()
        psutil.cpu_percent(interval=None)  # starts the CPU sample the first snapshot reads
        limit = max(CPU_SAMPLE_S, min(FIRST_SNAPSHOT_WAIT_S, self.settings.system_status_interval))
        while not stop.is_set():
            waited = time.monotonic() - primed
            if waited >= limit or (waited >= CPU_SAMPLE_S and self.knows_enough()):
                break
            stop.wait(0.1)
        unknown = [name for name, state in self.availability.items() if state == UNKNOWN]
        if unknown:
            log.info("no heartbeat and no will from %s after %.0f s: reported offline", ", ".join(unknown),
                     time.monotonic() - primed)
