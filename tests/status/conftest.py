"""Helpers for the status tests: a simulated Raspberry Pi (thermal zone file, a `vcgencmd` executable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.status.metrics import Probes, run_command


def fake_pi(root: Path, millidegrees: int = 61234, throttled: str = "0x50005") -> Probes:
    """Real files and a real executable standing in for the Pi's: the code path is the one a Pi runs."""
    root.mkdir(parents=True, exist_ok=True)
    zone = root / "thermal_zone0_temp"
    zone.write_text(f"{millidegrees}\n")
    model = root / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    tool = root / "vcgencmd"
    tool.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] || exit 2\necho throttled={throttled}\n")
    tool.chmod(0o755)
    return Probes(thermal_zone=zone, device_model=model, vcgencmd=str(tool), run=run_command)


def not_a_pi(root: Path) -> Probes:
    return Probes(thermal_zone=root / "no-thermal", device_model=root / "no-model", vcgencmd=None)


@pytest.fixture
def pi_probes(tmp_path: Path) -> Probes:
    return fake_pi(tmp_path / "pi")


@pytest.fixture
def plain_probes(tmp_path: Path) -> Probes:
    return not_a_pi(tmp_path / "plain")
