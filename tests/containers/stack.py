"""The committed compose stack, driven the way an operator drives it: docker-compose (or `docker compose`)
in a copy of the checkout, plus `docker inspect` / `docker exec` / `docker top` to look inside.

Why not testcontainers' DockerCompose: it drives Compose v2 only (`docker compose ...`, and reads
`docker compose ps --format json`), which Debian bookworm does not package; Debian's docker-compose 1.29
is what this machine and the deployment docs' Debian path have. Compose v2 is used here when it is the
only one installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Never copied into the stack's project: secrets and state of the developer's own runs.
LOCAL_ONLY = {".env", ".venv", "data", ".git", "mosquitto/passwd", "bench/results"}


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    raise RuntimeError("neither docker-compose nor the docker compose plugin is installed")


def copy_checkout(dst: Path, src: Path = REPO) -> None:
    """The files a fresh clone has (tracked and new, not ignored), so the stack never sees local secrets."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                             capture_output=True, timeout=60)
    if listing.returncode == 0:
        names = [n for n in listing.stdout.decode().split("\0") if n]
    else:  # not a git checkout (an unpacked tarball)
        names = [str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()]
    for name in names:
        if any(name == skip or name.startswith(skip + "/") for skip in LOCAL_ONLY):
            continue
        source = src / name
        if not source.is_file():  # deleted in the work tree but still in the index
            continue
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def parse_time(value: str) -> datetime:
    """Docker's RFC 3339 times with nanoseconds (2026-11-30T07:55:41.404841123Z or ...+00:00)."""
    value = value.replace("Z", "+00:00")
    head, _, rest = value.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        value = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(value)


class Stack:
    """One compose project in a directory of its own."""

    def __init__(self, project_dir: Path, name: str, files: Sequence[str], log: Path) -> None:
        self.dir = project_dir
        self.name = name
        self.files = list(files)
        self.log = log
        self.api_url = ""  # where the published API answers, once known
        self.token = ""  # the API_TOKEN of this project's .env
        self.up_started = 0.0  # time.monotonic() of the first `up -d`

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*compose_command(), "-p", self.name]
        for name in self.files:
            cmd += ["-f", name]
        started = time.monotonic()
        proc = subprocess.run([*cmd, *args], cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        with self.log.open("a") as out:
            out.write(f"$ {' '.join(cmd + list(args))}  # {time.monotonic() - started:.1f}s, exit {proc.returncode}\n")
            out.write(proc.stdout + proc.stderr + "\n")
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
        return proc

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def containers(self) -> dict[str, str]:
        """service -> container id, for every container of the project (running or not)."""
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}").stdout.split()
        if not ids:
            return {}
        return {info["Config"]["Labels"]["com.docker.compose.service"]: info["Id"] for info in self.inspect(*ids)}

    def inspect(self, *ids: str) -> list[dict]:
        return json.loads(docker("inspect", *ids).stdout)

    def exec(self, service: str, *cmd: str, user: str | None = None, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["exec"] + (["-u", user] if user else []) + [self.container(service), *cmd]
        return docker(*args, timeout=timeout, check=check)

    def wait_healthy(self, services: Iterable[str], timeout: float) -> dict[str, float]:
        """Block until every service is healthy; seconds from each container's start to its first good probe."""
        wanted = set(services)
        deadline = time.monotonic() + timeout
        while True:
            infos = {name: self.inspect(cid)[0] for name, cid in self.containers().items() if name in wanted}
            states = {name: (info["State"].get("Health") or {}).get("Status") for name, info in infos.items()}
            if set(infos) == wanted and all(s == "healthy" for s in states.values()):
                return {name: self._healthy_after(info) for name, info in infos.items()}
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout:.0f}s: {states}\n{self.tail_logs()}")
            time.sleep(0.5)

    @staticmethod
    def _healthy_after(info: dict) -> float:
        started = parse_time(info["State"]["StartedAt"])
        good = [e for e in info["State"]["Health"]["Log"] if e["ExitCode"] == 0]
        return round((parse_time(good[0]["End"]) - started).total_seconds(), 2) if good else float("nan")

    def tail_logs(self, lines: int = 60) -> str:
        proc = self.compose("logs", "--no-color", "--tail", str(lines), check=False)
        return proc.stdout[-12000:]


def host_kill_9(container: str) -> bool:
    """kill -9 of the container's PID 1 from the host, as a crash or a power-cut-like stop looks to Docker
    (its restart policy applies; `docker kill` counts as a manual stop and would not restart it).
    False where the daemon's processes are not visible from here (Docker Desktop's VM)."""
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())
    if pid <= 0 or not Path(f"/proc/{pid}").exists():
        return False
    os.kill(pid, 9)
    return True
