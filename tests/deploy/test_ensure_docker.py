"""scripts/ensure-docker.sh's choice of base images, against a stub `docker` (no engine needed).

The real path (a daemon, pulls, the container lab) runs in `make test-containers`; here the branches that
machine never takes: a registry that answers, and neither a registry nor a lab.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A docker that answers `info`/`version`, knows the images listed in $STUB_STATE/images, and pulls only
# when $STUB_PULL=ok (recording each pull).
STUB_DOCKER = r"""#!/bin/sh
case "$1" in
  info) exit 0 ;;
  version) echo 99.0-stub; exit 0 ;;
  image) grep -qxF "$3" "$STUB_STATE/images" 2>/dev/null; exit $? ;;
  pull) [ "$STUB_PULL" = ok ] || { echo "no such host" >&2; exit 1; }
        img="$3"; [ "$2" = -q ] || img="$2"; echo "$img" >> "$STUB_STATE/images"; echo "$img" >> "$STUB_STATE/pulled"
        exit 0 ;;
esac
echo "stub docker: unexpected $*" >&2; exit 3
"""
# A container lab whose setup.sh "builds" the stand-ins by registering them with the stub.
STUB_LAB = """#!/bin/sh
echo python:3.11-slim-bookworm >> "$STUB_STATE/images"
echo eclipse-mosquitto:2 >> "$STUB_STATE/images"
echo lab-ran >> "$STUB_STATE/lab"
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout at tmp/work/ezrec with the script and the files it reads, and tmp/work/shared beside it."""
    root = tmp_path / "work" / "ezrec"
    for name in ("scripts/ensure-docker.sh", "scripts/system-deps.sh", "Dockerfile", "docker-compose.yml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return root


def _run(checkout: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _executable(bin_dir / "docker", STUB_DOCKER)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_STATE": str(state), **env}
    return subprocess.run(["bash", str(checkout / "scripts" / "ensure-docker.sh")], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_present_images_are_used_as_they_are(checkout: Path, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "images").write_text("python:3.11-slim-bookworm\neclipse-mosquitto:2\n")
    proc = _run(checkout, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "state" / "pulled").exists()


def test_a_reachable_registry_is_preferred_to_the_lab(checkout: Path, tmp_path: Path) -> None:
    lab = tmp_path / "work" / "shared" / "container-lab"
    lab.mkdir(parents=True)
    _executable(lab / "setup.sh", STUB_LAB)
    proc = _run(checkout, tmp_path, STUB_PULL="ok")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "pulled").read_text().split() == ["python:3.11-slim-bookworm", "eclipse-mosquitto:2"]
    assert not (tmp_path / "state" / "lab").exists()


def test_without_a_registry_the_lab_beside_the_checkout_builds_stand_ins(checkout: Path, tmp_path: Path) -> None:
    lab = tmp_path / "work" / "shared" / "container-lab"
    lab.mkdir(parents=True)
    _executable(lab / "setup.sh", STUB_LAB)
    proc = _run(checkout, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "lab").read_text().split() == ["lab-ran"]
    assert "local stand-ins" in proc.stdout


def test_the_lab_can_be_named_by_environment(checkout: Path, tmp_path: Path) -> None:
    lab = tmp_path / "elsewhere" / "lab"
    lab.mkdir(parents=True)
    _executable(lab / "setup.sh", STUB_LAB)
    proc = _run(checkout, tmp_path, EZREC_CONTAINER_LAB=str(lab))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "lab").exists()


def test_neither_registry_nor_lab_fails_with_what_to_do(checkout: Path, tmp_path: Path) -> None:
    proc = _run(checkout, tmp_path)
    assert proc.returncode == 1
    message = proc.stderr
    assert "cannot pull python:3.11-slim-bookworm eclipse-mosquitto:2" in message
    assert "EZREC_CONTAINER_LAB" in message and "shared/container-lab/setup.sh" in message, message
