"""Device health from psutil and, on a Pi, the thermal zone."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from shared.payloads import StatusSnapshot
from shared.timeutil import utc_now

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """Millidegrees in the thermal zone file; absent off the Pi (the field is then omitted)."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def collect(camera_id: str, data_dir: Path, services: dict[str, str], recording_now: str | None,
            thermal_zone: Path = THERMAL_ZONE) -> StatusSnapshot:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(data_dir))
    return StatusSnapshot(
        camera_id=camera_id,
        collected_at=utc_now(),
        cpu_percent=psutil.cpu_percent(interval=None),
        load_1m=psutil.getloadavg()[0],
        memory_percent=memory.percent,
        memory_used_mb=round((memory.total - memory.available) / 1e6, 1),
        disk_total_gb=round(disk.total / 1e9, 2),
        disk_free_gb=round(disk.free / 1e9, 2),
        uptime_s=round(time.time() - psutil.boot_time(), 1),
        cpu_temperature_c=cpu_temperature_c(thermal_zone),
        services=dict(services),
        recording_now=recording_now,
    )
