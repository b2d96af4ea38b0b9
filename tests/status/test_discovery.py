"""Home Assistant discovery payloads checked against HA's documented MQTT sensor / binary_sensor schema.

The models below are written from home-assistant.io/integrations/sensor.mqtt, binary_sensor.mqtt,
sensor (device classes and their units) and binary_sensor (device classes), independently of the
models the service uses to build its payloads: unknown keys are refused, required ones enforced.
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from services.status.discovery import discovery_configs, present_fields
from shared.payloads import BookingRef, StatusSnapshot, Throttling
from shared.timeutil import utc_now
from tests.status.conftest import fake_pi

TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")

# Documented sensor device classes used or plausible here, with their documented units.
SENSOR_UNITS: dict[str | None, set[str | None] | None] = {
    None: None,  # generic: any unit
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
                  "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
    "duration": {"d", "h", "min", "s", "ms"},
    "temperature": {"°C", "°F", "K"},
    "timestamp": {None},
    "date": {None},
    "enum": {None},
}
BINARY_DEVICE_CLASSES = {
    None, "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence",
    "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"}


class DocDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    configuration_url: str | None = None
    connections: list[list[str]] | None = None
    hw_version: str | None = None
    identifiers: str | list[str] | None = None
    manufacturer: str | None = None
    model: str | None = None
    model_id: str | None = None
    name: str | None = None
    serial_number: str | None = None
    suggested_area: str | None = None
    sw_version: str | None = None
    via_device: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> DocDevice:
        assert self.identifiers or self.connections, "at least one of identifiers or connections must be present"
        return self


class DocAvailability(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload_available: str = "online"
    payload_not_available: str = "offline"
    topic: str
    value_template: str | None = None


class DocCommon(BaseModel):
    """Options shared by MQTT sensor and binary_sensor (single-component discovery: no `platform`)."""

    model_config = ConfigDict(extra="forbid")
    availability: list[DocAvailability] | None = None
    availability_mode: Literal["all", "any", "latest"] = "latest"
    availability_template: str | None = None
    availability_topic: str | None = None
    device: DocDevice | None = None
    device_class: str | None = None
    enabled_by_default: bool = True
    encoding: str = "utf-8"
    entity_category: Literal["diagnostic"] | None = None  # "must be diagnostic for sensors" when set
    entity_picture: str | None = None
    expire_after: int | None = None
    force_update: bool = False
    icon: str | None = None
    json_attributes_template: str | None = None
    json_attributes_topic: str | None = None
    name: str | None = None
    object_id: str | None = None
    payload_available: str = "online"
    payload_not_available: str = "offline"
    qos: Literal[0, 1, 2] = 0
    state_topic: str
    unique_id: str | None = None
    value_template: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> DocCommon:
        assert not (self.availability and self.availability_topic), "availability and availability_topic exclude"
        assert self.device is None or self.unique_id, "device only works when unique_id is set"
        return self


class DocSensor(DocCommon):
    last_reset_value_template: str | None = None
    options: list[str] | None = None
    suggested_display_precision: int | None = None
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    unit_of_measurement: str | None = None

    @model_validator(mode="after")
    def _units(self) -> DocSensor:
        assert self.device_class in SENSOR_UNITS, f"undocumented sensor device_class {self.device_class}"
        allowed = SENSOR_UNITS[self.device_class]
        assert allowed is None or self.unit_of_measurement in allowed, (self.device_class, self.unit_of_measurement)
        assert not (self.options and (self.state_class or self.unit_of_measurement))
        assert self.last_reset_value_template is None or self.state_class == "total"
        return self


class DocBinarySensor(DocCommon):
    off_delay: int | None = None
    payload_off: str = "OFF"
    payload_on: str = "ON"

    @model_validator(mode="after")
    def _class(self) -> DocBinarySensor:
        assert self.device_class in BINARY_DEVICE_CLASSES, f"undocumented binary device_class {self.device_class}"
        return self


def _snapshot(**extra: Any) -> StatusSnapshot:
    return StatusSnapshot(camera_id="cam1", collected_at=utc_now(), cpu_percent=3, load_1m=0.2, memory_percent=40,
                          memory_used_mb=800, disk_total_gb=32, disk_free_gb=20, uptime_s=50, **extra)


def _pi_snapshot() -> StatusSnapshot:
    return _snapshot(cpu_temperature_c=55.5, cloud_reachable=True, throttling=Throttling(
        raw="0x0", **dict.fromkeys(Throttling.model_fields.keys() - {"raw"}, False)))


def _full_snapshot() -> StatusSnapshot:
    """Every field set, as on a busy Pi."""
    start = utc_now()
    ref = BookingRef(id="b1", user_id="u1", start_time=start, end_time=start + timedelta(hours=1))
    return _pi_snapshot().model_copy(update=dict(
        load_5m=0.3, load_15m=0.4, memory_total_mb=4000, broker_connected=True, jobs_waiting=1, segments_waiting=2,
        uploads_pending=0, current_booking=ref, next_booking=ref, recording_now="b1", alerts_active=["disk_low"],
        camera_fault="stalled", services={"recorder": "online"}))


def _published(configs: list) -> list[tuple[str, dict]]:
    """What goes on the wire: the JSON each config serialises to."""
    return [(topic, json.loads(cfg.model_dump_json())) for topic, cfg in configs]


def _field_exists(path: list[str], model: type[BaseModel] = StatusSnapshot) -> bool:
    name, rest = path[0], path[1:]
    info = model.model_fields.get(name)
    if info is None:
        return False
    if not rest:
        return True
    union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
    types_ = [a for a in typing.get_args(info.annotation) if a is not type(None)] if union else [info.annotation]
    for t in types_:
        if isinstance(t, type) and issubclass(t, BaseModel):
            return _field_exists(rest, t)
        if typing.get_origin(t) is dict:
            return True  # e.g. services.recorder, last_errors.worker: any key
    return False


@pytest.mark.parametrize("snapshot", [_snapshot(), _pi_snapshot()], ids=["plain", "pi"])
def test_every_config_matches_the_documented_schema(snapshot):
    configs = _published(discovery_configs("cam1", "homeassistant", present_fields(snapshot), "Raspberry Pi 5"))
    assert configs
    unique_ids = set()
    for topic, payload in configs:
        assert TOPIC.match(topic), topic
        component = topic.split("/")[1]
        doc = DocSensor if component == "sensor" else DocBinarySensor
        entity = doc.model_validate(payload)  # raises on an undocumented key or a broken rule
        assert entity.unique_id and entity.unique_id not in unique_ids
        unique_ids.add(entity.unique_id)
        assert entity.device is not None and entity.device.identifiers == ["ezrec_cam1"]
        assert entity.device.manufacturer and entity.device.model == "Raspberry Pi 5" and entity.device.sw_version
        assert entity.name and entity.qos == 1
        if entity.state_topic == "ezrec/cam1/status":
            assert entity.availability_topic == "ezrec/cam1/status/availability"
            assert (entity.payload_available, entity.payload_not_available) == ("online", "offline")
            assert entity.value_template
        else:
            assert re.fullmatch(r"ezrec/cam1/(api|recorder|worker|status)/availability", entity.state_topic)
            assert (entity.payload_on, entity.payload_off, entity.device_class) == ("online", "offline",
                                                                                    "connectivity")
        if component == "sensor" and entity.state_class:
            assert entity.device_class not in ("timestamp", "date", "enum")


def test_every_value_template_reads_a_field_of_the_status_snapshot():
    configs = _published(discovery_configs("cam1", "homeassistant", present_fields(_pi_snapshot())))
    templates = [p[k] for _, p in configs for k in ("value_template", "json_attributes_template") if k in p]
    assert len(templates) > 20
    for template in templates:
        paths = re.findall(r"value_json\.([A-Za-z_][\w.]*)", template)
        assert paths, template
        for path in paths:
            assert _field_exists(path.split(".")), f"{template!r}: {path} is not a StatusSnapshot field"
    # and the checker itself can fail
    assert not _field_exists(["cpu_temp"]) and not _field_exists(["throttling", "nope"])
    assert _field_exists(["services", "recorder"]) and _field_exists(["next_booking", "start_time"])


def test_pi_only_and_cloud_entities_appear_only_where_the_readings_exist(tmp_path):
    def object_ids(snapshot: StatusSnapshot) -> set[str]:
        return {t.split("/")[3] for t, _ in discovery_configs("cam1", "homeassistant", present_fields(snapshot))}

    plain, pi = object_ids(_snapshot()), object_ids(_pi_snapshot())
    pi_only = {"cpu_temperature_c", "cloud_reachable", "throttling_under_voltage_now", "throttling_throttled_now"}
    assert pi_only <= pi and not pi_only & plain
    assert {"cpu_percent", "disk_free_gb", "recording", "problem", "recorder_online", "next_booking"} <= plain
    assert fake_pi(tmp_path).vcgencmd  # the simulated Pi used by the service tests has the tool


def test_templates_render_to_what_home_assistant_expects():
    """With Jinja2 (Home Assistant's template engine) the templates render to numbers, ON/OFF or None."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for snapshot, expect_on in ((_pi_snapshot(), False), (_full_snapshot(), True)):
        value_json = json.loads(snapshot.model_dump_json())
        for topic, payload in _published(discovery_configs("cam1", "homeassistant", present_fields(snapshot))):
            if payload["state_topic"] != "ezrec/cam1/status":
                continue
            out = env.from_string(payload["value_template"]).render(value_json=value_json)
            if "/binary_sensor/" in topic:
                assert out in ("ON", "OFF"), (topic, out)
                if topic.endswith(("/recording/config", "/problem/config")):
                    assert out == ("ON" if expect_on else "OFF")
            elif expect_on and payload.get("device_class") == "timestamp":
                assert datetime.fromisoformat(out).tzinfo is not None, out
            elif expect_on and (payload.get("unit_of_measurement") or payload.get("state_class")):
                float(out)
            else:
                assert out, (topic, out)  # a value, or "None": Home Assistant's "unknown"
        attributes = next(p for t, p in _published(discovery_configs("cam1", "homeassistant", present_fields(
            snapshot))) if t.endswith("/problem/config"))["json_attributes_template"]
        rendered = env.from_string(attributes).render(value_json=value_json)
        assert json.loads(rendered)["alerts"] == snapshot.alerts_active
