"""Home Assistant MQTT discovery: retained configs so the device shows up with its sensors, no YAML.

Topics follow `<prefix>/<component>/<node_id>/<object_id>/config` (single-component discovery).
Each entity reads one field of the retained StatusSnapshot on ezrec/<camera>/status and is
available while the status service is (its last-will topic); per-service connectivity sensors read
the services' own availability topics directly, so they stay true when the status service is down.
Field names below are the documented MQTT sensor / binary_sensor configuration variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from shared.payloads import StatusSnapshot
from shared.topics import Topics

MANUFACTURER = "EZREC"


class _Config(BaseModel):
    """Unset options are left out of the JSON, so Home Assistant applies its own defaults."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class HaDevice(_Config):
    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class HaEntity(_Config):
    name: str
    unique_id: str
    state_topic: str
    device: HaDevice
    value_template: str | None = None
    availability_topic: str | None = None
    payload_available: str | None = None
    payload_not_available: str | None = None
    device_class: str | None = None
    entity_category: Literal["diagnostic"] | None = None
    icon: str | None = None
    qos: int = 1
    json_attributes_topic: str | None = None
    json_attributes_template: str | None = None


class HaSensor(HaEntity):
    unit_of_measurement: str | None = None
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    suggested_display_precision: int | None = None


class HaBinarySensor(HaEntity):
    payload_on: str = "ON"
    payload_off: str = "OFF"


@dataclass(frozen=True)
class SensorSpec:
    object_id: str
    name: str
    field: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    precision: int | None = None
    diagnostic: bool = True
    template: str | None = None


@dataclass(frozen=True)
class BinarySpec:
    object_id: str
    name: str
    field: str
    device_class: str | None
    template: str
    diagnostic: bool = True


SENSORS = (
    SensorSpec("cpu_percent", "CPU", "cpu_percent", "%", precision=0),
    SensorSpec("load_1m", "Load (1 min)", "load_1m", precision=2),
    SensorSpec("load_5m", "Load (5 min)", "load_5m", precision=2),
    SensorSpec("load_15m", "Load (15 min)", "load_15m", precision=2),
    SensorSpec("memory_percent", "Memory used", "memory_percent", "%", precision=0),
    SensorSpec("memory_used_mb", "Memory used (MB)", "memory_used_mb", "MB", "data_size", precision=0),
    SensorSpec("disk_free_gb", "Disk free", "disk_free_gb", "GB", "data_size", precision=1, diagnostic=False),
    SensorSpec("disk_total_gb", "Disk size", "disk_total_gb", "GB", "data_size", precision=1),
    SensorSpec("uptime_s", "Uptime", "uptime_s", "s", "duration", precision=0),
    SensorSpec("cpu_temperature_c", "CPU temperature", "cpu_temperature_c", "°C", "temperature", precision=1,
               diagnostic=False),
    SensorSpec("jobs_waiting", "Recordings waiting", "jobs_waiting", diagnostic=False),
    SensorSpec("segments_waiting", "Segments waiting", "segments_waiting"),
    SensorSpec("uploads_pending", "Uploads pending", "uploads_pending", diagnostic=False),
    SensorSpec("next_booking", "Next booking", "next_booking", device_class="timestamp", state_class=None,
               diagnostic=False,
               template="{{ value_json.next_booking.start_time if value_json.next_booking else None }}"),
    SensorSpec("current_booking", "Current booking", "current_booking", state_class=None, diagnostic=False,
               template="{{ value_json.current_booking.id if value_json.current_booking else None }}"),
)

_THROTTLE_FLAGS = (
    ("under_voltage_now", "Under-voltage"),
    ("arm_frequency_capped_now", "ARM frequency capped"),
    ("throttled_now", "Throttled"),
    ("soft_temp_limit_now", "Soft temperature limit"),
    ("under_voltage_since_boot", "Under-voltage since boot"),
    ("throttled_since_boot", "Throttled since boot"),
)

BINARY_SENSORS = (
    BinarySpec("recording", "Recording", "recording_now", "running",
               "{{ 'ON' if value_json.recording_now else 'OFF' }}", diagnostic=False),
    BinarySpec("problem", "Problem", "alerts_active", "problem",
               "{{ 'ON' if value_json.alerts_active else 'OFF' }}", diagnostic=False),
    BinarySpec("camera_fault", "Camera fault", "camera_fault", "problem",
               "{{ 'ON' if value_json.camera_fault else 'OFF' }}"),
    BinarySpec("broker_connected", "Broker connected", "broker_connected", "connectivity",
               "{{ 'ON' if value_json.broker_connected else 'OFF' }}"),
    BinarySpec("cloud_reachable", "Cloud reachable", "cloud_reachable", "connectivity",
               "{{ 'ON' if value_json.cloud_reachable else 'OFF' }}"),
    *(BinarySpec(f"throttling_{flag}", label, "throttling", "problem",
                 f"{{{{ 'ON' if value_json.throttling.{flag} else 'OFF' }}}}") for flag, label in _THROTTLE_FLAGS),
)

SERVICE_NAMES = {"api": "API", "recorder": "Recorder", "worker": "Video worker", "status": "Status service"}


def node_id(camera_id: str) -> str:
    return f"ezrec_{camera_id}"


def software_version() -> str:
    try:
        return metadata.version("ezrec")
    except metadata.PackageNotFoundError:
        return "unknown"


def device_block(camera_id: str, model: str | None) -> HaDevice:
    return HaDevice(identifiers=[node_id(camera_id)], name=f"EZREC {camera_id}", manufacturer=MANUFACTURER,
                    model=model or "EZREC court camera", sw_version=software_version())


def present_fields(snapshot: StatusSnapshot) -> frozenset[str]:
    """Fields this device actually reports (temperature and throttling only on a Pi, cloud only if set)."""
    return frozenset(snapshot.model_dump(mode="json").keys())


def discovery_configs(
    camera_id: str, prefix: str, present: frozenset[str], model: str | None = None,
) -> list[tuple[str, HaEntity]]:
    """(config topic, payload) for every entity the device can feed; publish each retained."""
    topics = Topics(camera_id)
    node = node_id(camera_id)
    device = device_block(camera_id, model)
    availability = {"availability_topic": topics.availability("status"),
                    "payload_available": "online", "payload_not_available": "offline"}
    out: list[tuple[str, HaEntity]] = []
    for s in SENSORS:
        if s.field not in present:
            continue
        out.append((f"{prefix}/sensor/{node}/{s.object_id}/config", HaSensor(
            name=s.name, unique_id=f"{node}_{s.object_id}",
            state_topic=topics.status, value_template=s.template or f"{{{{ value_json.{s.field} }}}}",
            unit_of_measurement=s.unit, device_class=s.device_class, state_class=s.state_class,
            suggested_display_precision=s.precision, entity_category="diagnostic" if s.diagnostic else None,
            device=device, **availability)))
    for b in BINARY_SENSORS:
        if b.field not in present:
            continue
        extra: dict[str, Any] = {}
        if b.object_id == "problem":
            extra = {"json_attributes_topic": topics.status, "json_attributes_template":
                     "{{ {'alerts': value_json.alerts_active, 'last_errors': value_json.last_errors} | tojson }}"}
        out.append((f"{prefix}/binary_sensor/{node}/{b.object_id}/config", HaBinarySensor(
            name=b.name, unique_id=f"{node}_{b.object_id}",
            state_topic=topics.status, value_template=b.template, device_class=b.device_class,
            entity_category="diagnostic" if b.diagnostic else None, device=device, **availability, **extra)))
    for service, label in SERVICE_NAMES.items():
        # The service's own last will: correct even while the status service itself is down.
        out.append((f"{prefix}/binary_sensor/{node}/{service}_online/config", HaBinarySensor(
            name=f"{label} online", unique_id=f"{node}_{service}_online",
            state_topic=topics.availability(service), payload_on="online", payload_off="offline",
            device_class="connectivity", entity_category="diagnostic", device=device)))
    return out
