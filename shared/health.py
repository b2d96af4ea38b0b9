"""`ezrec health SERVICE`: exit 0 when the service is healthy; the containers' healthcheck.

Docker runs it every few seconds in every container for as long as the device is on, so it imports the
standard library only: loading the settings (pydantic) would cost ~0.17 s of CPU per probe, four times the
probe itself. It reads the two settings it needs, DATA_DIR and API_PORT, as `shared.settings.Settings`
does (the environment first, names matched case-insensitively, then `.env` in the working directory);
tests/test_health.py holds the two readers to the same answers.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

SERVICES = ("api", "recorder", "worker", "status")
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_STALE_S = 30.0
DEFAULTS = {"DATA_DIR": "data", "API_PORT": "8000"}


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as python-dotenv reads the common forms: `export`, quotes, `#` comments."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip().upper()] = value
    return values


def setting(name: str, environ: Mapping[str, str] | None = None, env_file: Path = Path(".env")) -> str:
    """One setting by its env name: environment (any case), then `env_file`, then the default."""
    environ = os.environ if environ is None else environ
    for key, value in environ.items():
        if key.upper() == name:
            return value
    return _dotenv(env_file).get(name, DEFAULTS[name])


def heartbeat_fresh(state_dir: Path, service: str) -> tuple[bool, str]:
    """A service is alive while its runtime rewrites state/heartbeat-<service>.json (every 5 s)."""
    path = state_dir / f"heartbeat-{service}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"no heartbeat at {path}"
    age = time.time() - float(data.get("at", 0))
    if age > HEARTBEAT_STALE_S:
        return False, f"heartbeat is {age:.0f}s old"
    return True, f"heartbeat {age:.1f}s old (pid {data.get('pid')})"


def api_answers(port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """GET /health over a plain socket: urllib would add ~20 ms of imports to every probe."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        return False, str(exc)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status.split(" ")[1:2] != ["200"]:
        return False, status or "no answer"
    try:
        return True, str(json.loads(body))
    except ValueError as exc:
        return False, f"not JSON: {exc}"


def check(service: str) -> tuple[bool, str]:
    if service == "api":
        return api_answers(int(setting("API_PORT")))
    return heartbeat_fresh(Path(setting("DATA_DIR")) / "state", service)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: ezrec health {{{','.join(SERVICES)}}}", file=sys.stderr)
        return 2
    service = argv[0]
    try:
        ok, detail = check(service)
    except ValueError as exc:  # API_PORT that is not a number
        ok, detail = False, str(exc)
    print(f"{service} {'healthy' if ok else 'unhealthy'}: {detail}")
    return 0 if ok else 1
