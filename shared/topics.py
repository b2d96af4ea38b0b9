"""The MQTT topic tree (documented in docs/mqtt.md; keep both in step)."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "ezrec"
MEDIA_UPDATED = f"{ROOT}/media/updated"
DEADLETTER = f"{ROOT}/deadletter"
SERVICES = ("api", "recorder", "worker", "status")


@dataclass(frozen=True)
class Topics:
    camera_id: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.camera_id}"

    @property
    def bookings(self) -> str:
        return f"{self.base}/bookings"

    @property
    def recording_started(self) -> str:
        return f"{self.base}/recording/started"

    @property
    def recording_segment(self) -> str:
        return f"{self.base}/recording/segment"

    @property
    def recording_finished(self) -> str:
        return f"{self.base}/recording/finished"

    @property
    def video_progress(self) -> str:
        return f"{self.base}/video/progress"

    @property
    def video_processed(self) -> str:
        return f"{self.base}/video/processed"

    @property
    def video_uploaded(self) -> str:
        return f"{self.base}/video/uploaded"

    @property
    def video_failed(self) -> str:
        return f"{self.base}/video/failed"

    @property
    def highlight_request(self) -> str:
        """A press of a highlight button (MQTT client, Home Assistant, the API, the GPIO button)."""
        return f"{self.base}/highlight/request"

    @property
    def highlight_clip(self) -> str:
        """The recorder's answer to a press during a recording: the clip's span (re-sent, same id, when extended)."""
        return f"{self.base}/highlight/clip"

    @property
    def highlight_refused(self) -> str:
        return f"{self.base}/highlight/refused"

    @property
    def highlight_created(self) -> str:
        return f"{self.base}/highlight/created"

    @property
    def highlight_failed(self) -> str:
        return f"{self.base}/highlight/failed"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def availability(self, service: str) -> str:
        return f"{self.base}/{service}/availability"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    @property
    def recorder_fault(self) -> str:
        return f"{self.base}/recorder/fault"

    def command(self, service: str) -> str:
        """Operator commands for one service (restart, snapshot, publish_logs); only the API publishes here."""
        return f"{self.base}/{service}/command"

    def command_ack(self, service: str) -> str:
        """A service's answer to each command it received (accepted, done, refused or ignored)."""
        return f"{self.base}/{service}/command/ack"

    def logs(self, service: str, instance: str | None = None) -> str:
        """A service's last warnings and errors, retained; one topic per worker when several share a camera."""
        return f"{self.base}/{service}/logs" + (f"/{instance}" if instance else "")

    @property
    def operator_action(self) -> str:
        """What an operator did through the API (outbox replay/drop, restart, snapshot), and how it went."""
        return f"{self.base}/operator/action"
