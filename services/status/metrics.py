"""Device health: psutil for CPU, load, memory, disk and uptime; on a Pi, the thermal zone and vcgencmd.

Everything Pi-only goes through `Probes` (file paths and the command runner), so tests simulate a Pi
with a fake thermal file and a fake `vcgencmd` and the fields stay absent on other machines.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from shared.payloads import Throttling

log = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
DEVICE_MODEL = Path("/proc/device-tree/model")
COMMAND_TIMEOUT_S = 2.0

CommandRunner = Callable[[list[str]], str | None]

# Bit positions documented for `vcgencmd get_throttled`.
_THROTTLE_BITS = {
    "under_voltage_now": 0,
    "arm_frequency_capped_now": 1,
    "throttled_now": 2,
    "soft_temp_limit_now": 3,
    "under_voltage_since_boot": 16,
    "arm_frequency_capped_since_boot": 17,
    "throttled_since_boot": 18,
    "soft_temp_limit_since_boot": 19,
}


def run_command(argv: list[str]) -> str | None:
    """stdout of a short command, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass
class Probes:
    """Where the Pi-only readings come from; defaults are the real Pi locations."""

    thermal_zone: Path = THERMAL_ZONE
    device_model: Path = DEVICE_MODEL
    vcgencmd: str | None = field(default_factory=lambda: shutil.which("vcgencmd"))
    run: CommandRunner = run_command


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """Millidegrees in the thermal zone file; absent off the Pi (the field is then omitted)."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def parse_throttled(output: str) -> Throttling | None:
    """`throttled=0x50005` -> named flags; None for anything else."""
    text = output.strip()
    if "=" in text:
        text = text.split("=", 1)[1].strip()
    try:
        mask = int(text, 16)
    except ValueError:
        return None
    flags = {name: bool(mask >> bit & 1) for name, bit in _THROTTLE_BITS.items()}
    return Throttling(raw=f"0x{mask:x}", **flags)


def read_throttled(probes: Probes) -> Throttling | None:
    if not probes.vcgencmd:
        return None
    output = probes.run([probes.vcgencmd, "get_throttled"])
    return parse_throttled(output) if output else None


def device_model(path: Path = DEVICE_MODEL) -> str | None:
    """`Raspberry Pi 5 Model B Rev 1.0` on a Pi (for Home Assistant's device card)."""
    try:
        return path.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def system_metrics(data_dir: Path, probes: Probes) -> dict[str, Any]:
    """The StatusSnapshot fields that describe the machine itself."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(data_dir))
    load_1m, load_5m, load_15m = psutil.getloadavg()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load_1m": round(load_1m, 2),
        "load_5m": round(load_5m, 2),
        "load_15m": round(load_15m, 2),
        "memory_percent": memory.percent,
        "memory_used_mb": round((memory.total - memory.available) / 1e6, 1),
        "memory_total_mb": round(memory.total / 1e6, 1),
        "disk_total_gb": round(disk.total / 1e9, 2),
        "disk_free_gb": round(disk.free / 1e9, 2),
        "uptime_s": round(time.time() - psutil.boot_time(), 1),
        "cpu_temperature_c": cpu_temperature_c(probes.thermal_zone),
        "throttling": read_throttled(probes),
    }
