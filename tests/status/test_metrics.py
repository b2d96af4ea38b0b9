"""Machine metrics: psutil on this machine, the Pi-only parts through simulated files and commands."""

from __future__ import annotations

import psutil
import pytest

from services.status.metrics import (
    Probes,
    cpu_temperature_c,
    device_model,
    parse_throttled,
    read_throttled,
    run_command,
    system_metrics,
)
from tests.status.conftest import fake_pi


def test_thermal_zone_is_read_when_present_and_absent_when_not(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("61234\n")
    assert cpu_temperature_c(zone) == 61.234
    zone.write_text("garbage")
    assert cpu_temperature_c(zone) is None
    assert cpu_temperature_c(tmp_path / "missing") is None


@pytest.mark.parametrize(("output", "expected_true"), [
    ("throttled=0x0\n", set()),
    ("throttled=0x50005\n", {"under_voltage_now", "throttled_now", "under_voltage_since_boot",
                             "throttled_since_boot"}),
    ("throttled=0x80008", {"soft_temp_limit_now", "soft_temp_limit_since_boot"}),
    ("throttled=0x20002", {"arm_frequency_capped_now", "arm_frequency_capped_since_boot"}),
    ("throttled=0x10000", {"under_voltage_since_boot"}),  # happened earlier, fine now
    ("0xF000F", {"under_voltage_now", "arm_frequency_capped_now", "throttled_now", "soft_temp_limit_now",
                 "under_voltage_since_boot", "arm_frequency_capped_since_boot", "throttled_since_boot",
                 "soft_temp_limit_since_boot"}),
])
def test_throttled_bitmask_becomes_named_flags(output, expected_true):
    t = parse_throttled(output)
    assert t is not None
    flags = {k for k, v in t.model_dump().items() if v is True}
    assert flags == expected_true
    assert t.raw == hex(int(output.strip().split("=")[-1], 16))


@pytest.mark.parametrize("output", ["", "throttled=", "error: VCHI initialisation failed", "throttled=0xZZ"])
def test_unparseable_throttled_output_is_absent(output):
    assert parse_throttled(output) is None


def test_vcgencmd_runs_as_a_real_command_on_a_simulated_pi(tmp_path):
    probes = fake_pi(tmp_path, throttled="0x4")
    t = read_throttled(probes)
    assert t is not None and t.throttled_now and not t.under_voltage_now and t.raw == "0x4"


def test_vcgencmd_missing_failing_or_hanging_means_no_throttling_field(tmp_path):
    assert read_throttled(Probes(vcgencmd=None)) is None
    assert read_throttled(Probes(vcgencmd=str(tmp_path / "nope"))) is None  # not found: OSError handled
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'VCHI initialisation failed' >&2\nexit 255\n")
    failing.chmod(0o755)
    assert read_throttled(Probes(vcgencmd=str(failing))) is None
    calls: list[list[str]] = []
    assert read_throttled(Probes(vcgencmd="vcgencmd", run=lambda argv: calls.append(argv) or None)) is None
    assert calls == [["vcgencmd", "get_throttled"]]


def test_run_command_times_out_instead_of_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr("services.status.metrics.COMMAND_TIMEOUT_S", 0.3)
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 5\necho throttled=0x0\n")
    slow.chmod(0o755)
    assert run_command([str(slow)]) is None


def test_device_model_strips_the_device_tree_nul(tmp_path):
    probes = fake_pi(tmp_path)
    assert device_model(probes.device_model) == "Raspberry Pi 5 Model B Rev 1.0"
    assert device_model(tmp_path / "absent") is None


def test_system_metrics_on_this_machine(tmp_path, plain_probes):
    m = system_metrics(tmp_path, plain_probes)
    disk = psutil.disk_usage(str(tmp_path))
    assert m["disk_total_gb"] == round(disk.total / 1e9, 2)
    assert abs(m["disk_free_gb"] - disk.free / 1e9) < 1.0  # other tests write files meanwhile
    assert 0 <= m["cpu_percent"] <= 100 and 0 < m["memory_percent"] < 100
    assert 0 < m["memory_used_mb"] < m["memory_total_mb"]
    assert m["load_1m"] >= 0 and m["load_5m"] >= 0 and m["load_15m"] >= 0
    assert m["uptime_s"] > 0
    assert m["cpu_temperature_c"] is None and m["throttling"] is None


def test_system_metrics_on_a_simulated_pi(tmp_path, pi_probes):
    m = system_metrics(tmp_path, pi_probes)
    assert m["cpu_temperature_c"] == 61.234
    assert m["throttling"].under_voltage_now and m["throttling"].raw == "0x50005"
