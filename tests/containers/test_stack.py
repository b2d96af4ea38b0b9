"""docker-compose.yml for real: built, started, used through the API, broken on purpose, restarted.

The stack is the committed docker-compose.yml plus docker-compose.dev.yml (no camera here: the synthetic
test pattern), in a copy of the checkout with its own `ezrec passwords` secrets, exactly as an operator
runs it; docker-compose.no-oom-adj.yml is added only where this daemon refuses the recorder's negative
oom_score_adj. The test settings only shrink the picture (640x360 at 15 fps) and the segment length (2 s,
so that "mid-booking" has segments behind it) and publish the API on a free loopback port.

The tests share one stack and run in file order; measurements (build time, time to healthy, time to the
first video, image sizes) go to $EZREC_CONTAINER_REPORT as JSON, never into asserts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shared.timeutil import isoformat_z, utc_now
from tests.broker import free_port
from tests.containers.stack import REPO, Stack, copy_checkout, docker, host_kill_9
from tests.media import INTRO_RGB, frames_rgb, make_intro, make_logo_png, probe

PROJECT = "ezrecct"
APP_SERVICES = ("api", "recorder", "worker", "status")
ALL_SERVICES = ("mosquitto", *APP_SERVICES)
WIDTH, HEIGHT, FPS, SEGMENT_S = 640, 360, 15, 2
INTRO_S = 2.0
USER = "player1"
A_S, B_S = 10, 12  # booking lengths
LOGO_RED = np.array([255, 0, 0])
REPORT: dict[str, Any] = {}


def _python_image() -> str:
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M).group(1)


def _daemon_allows_negative_oom_score_adj() -> bool:
    proc = docker("run", "--rm", "--oom-score-adj=-500", "--entrypoint", "true", _python_image(),
                  timeout=120, check=False)
    return proc.returncode == 0


def _project_images() -> list[str]:
    return docker("image", "ls", "-q", "--filter", "label=io.ezrec.project").stdout.split()


def _write_report() -> None:
    path = Path(os.environ.get("EZREC_CONTAINER_REPORT") or REPO / "bench" / "results" / "test-containers.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    REPORT["load_at_end"] = os.getloadavg()
    path.write_text(json.dumps(REPORT, indent=2, default=str) + "\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: `make test-containers` installs and starts one "
                    "(scripts/ensure-docker.sh)")
    for image in (_python_image(), "eclipse-mosquitto:2"):
        if docker("image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"base image {image} is missing: `make test-containers` pulls it, or builds a local "
                        "stand-in with the container lab (scripts/ensure-docker.sh)")
    workdir = tmp_path_factory.mktemp("stack")
    project = workdir / "ezrec"
    copy_checkout(project)
    files = ["docker-compose.yml", "docker-compose.dev.yml"]
    allowed = _daemon_allows_negative_oom_score_adj()
    if not allowed:
        files.append("docker-compose.no-oom-adj.yml")
    stack = Stack(project, PROJECT, files, workdir / "compose.log")
    stack.compose("down", "-v", "--remove-orphans", check=False)  # what an aborted earlier run left
    volumes_before = set(docker("volume", "ls", "-q").stdout.split())

    from services.deploy.passwords import main as passwords

    assert passwords(["--root", str(project)]) == 0, "ezrec passwords"
    api_port = free_port()
    with (project / ".env").open("a") as env:
        env.write(f"EZREC_API_PUBLISH=127.0.0.1:{api_port}\nCAMERA_WIDTH={WIDTH}\nCAMERA_HEIGHT={HEIGHT}\n"
                  f"CAMERA_FPS={FPS}\nSEGMENT_SECONDS={SEGMENT_S}\nCAMERA_WARMUP_S=1\n")
    stack.api_url = f"http://127.0.0.1:{api_port}"
    stack.token = re.search(r"^API_TOKEN=(\S+)$", (project / ".env").read_text(), re.M).group(1)

    server = json.loads(docker("version", "--format", "{{json .Server}}").stdout)
    REPORT.update(
        docker_server=server.get("Version"),
        compose=stack.compose("version", "--short", check=False).stdout.strip(),
        base_image_stand_in=docker("image", "inspect", "-f", '{{index .Config.Labels "container-lab.stand-in"}}',
                                   _python_image()).stdout.strip() or None,
        compose_files=files,
        daemon_allows_negative_oom_score_adj=allowed,
        load_at_start=os.getloadavg(),
    )
    cold = not _project_images()
    started = time.monotonic()
    stack.compose("build", timeout=900)
    REPORT["build"] = {"cold": cold, "seconds": round(time.monotonic() - started, 1)}

    try:
        started = time.monotonic()
        stack.compose("up", "-d", timeout=300)
        up_returned = time.monotonic() - started
        healthy = stack.wait_healthy(ALL_SERVICES, timeout=120)
        REPORT["first_up"] = {"up_d_returned_s": round(up_returned, 1),
                              "all_healthy_after_up_s": round(time.monotonic() - started, 1),
                              "healthy_after_container_start_s": healthy}
        stack.up_started = started
        yield stack
    finally:
        try:
            logs = stack.tail_logs(200)
            (workdir / "stack.log").write_text(logs)
            stack.compose("down", "-v", "--remove-orphans", timeout=180)
            left = set(docker("volume", "ls", "-q").stdout.split()) - volumes_before
            assert not left, f"down -v left volumes behind (named or anonymous): {left}"
        finally:
            _write_report()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.token}"},
                      timeout=30) as client:
        yield client


def _image(stack: Stack, service: str) -> dict:
    return stack.inspect(stack.inspect(stack.container(service))[0]["Image"])[0]


def test_one_image_for_api_status_and_worker(stack: Stack) -> None:
    images = {name: _image(stack, name) for name in APP_SERVICES}
    assert images["api"]["Id"] == images["status"]["Id"] == images["worker"]["Id"]
    assert images["recorder"]["Id"] != images["api"]["Id"]
    app, recorder = images["api"], images["recorder"]
    for name in APP_SERVICES:
        info = stack.inspect(stack.container(name))[0]
        assert info["Config"]["Cmd"] == [name] and info["Config"]["Entrypoint"] == ["ezrec"], name
    # Everything up to the dependency venv is shared: the base image, the user, the venv.
    base_layers = docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", _python_image()).stdout
    shared = 0
    for mine, theirs in zip(app["RootFS"]["Layers"], recorder["RootFS"]["Layers"], strict=False):
        if mine != theirs:
            break
        shared += 1
    assert shared >= len(json.loads(base_layers)) + 2, "the recorder image does not reuse the app's venv layer"
    # What the two images cost on disk beyond the base image: their shared layers once, plus each one's own.
    df = {i["ID"].removeprefix("sha256:"): i for i in
          json.loads(docker("system", "df", "-v", "--format", "{{json .Images}}").stdout)}
    mine = [df[info["Id"].removeprefix("sha256:")] for info in (app, recorder)]
    base_size = int(docker("image", "inspect", "-f", "{{.Size}}", _python_image()).stdout)
    on_disk = _df_bytes(mine[0]["SharedSize"]) - base_size + sum(_df_bytes(i["UniqueSize"]) for i in mine)
    REPORT["images"] = {
        "size_mb": {tag: round(info["Size"] / 1e6, 1) for info in (app, recorder) for tag in info["RepoTags"]},
        "base_image_mb": round(base_size / 1e6, 1),
        "project_layers_on_disk_mb": round(on_disk / 1e6, 1),
        "layers_shared_by_both": shared,
    }


def _df_bytes(text: str) -> float:
    """`docker system df` sizes: 2B, 1.747MB, 365.5MB, 1.2GB."""
    match = re.fullmatch(r"([\d.]+)\s*([kMG]?B)", text.strip())
    assert match, text
    return float(match.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[match.group(2)]


def test_every_container_is_healthy_and_locked_down(stack: Stack) -> None:
    infos = {name: stack.inspect(cid)[0] for name, cid in stack.containers().items()}
    assert set(infos) == set(ALL_SERVICES)
    for name, info in infos.items():
        assert info["State"]["Health"]["Status"] == "healthy", name
        assert not info["HostConfig"]["Privileged"], name
    for name in APP_SERVICES:
        info = infos[name]
        assert info["Config"]["User"] == "10001", name
        top = docker("top", info["Id"], "-eo", "pid,uid,args").stdout.splitlines()[1:]
        assert top and all(line.split()[1] == "10001" for line in top), f"{name} runs a process as another user: {top}"
        assert info["HostConfig"]["CapDrop"] == ["ALL"], name
        assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"], name
        status = stack.exec(name, "cat", "/proc/1/status").stdout
        caps = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M))
        assert set(caps) >= {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}, status
        assert all(int(value, 16) == 0 for value in caps.values()), f"{name} keeps capabilities {caps}"
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), name
    # The broker's entrypoint starts as root only to chown its volume; mosquitto itself drops to uid 1883.
    broker = docker("top", infos["mosquitto"]["Id"], "-eo", "pid,uid,args").stdout.splitlines()[1:]
    assert [line.split()[1] for line in broker if "mosquitto -c" in line] == ["1883"], broker

    # The OOM protection is there wherever the daemon allows it.
    adj = {name: int(stack.exec(name, "cat", "/proc/1/oom_score_adj").stdout) for name in ("recorder", "worker")}
    assert adj["worker"] == 500
    assert adj["recorder"] == (-500 if REPORT["daemon_allows_negative_oom_score_adj"] else 0)
    REPORT["oom_score_adj"] = adj


def _declared_read_only(stack: Stack) -> dict[str, list[str]]:
    """service -> container paths that the merged compose config mounts `:ro`."""
    config = stack.compose("config").stdout
    out: dict[str, list[str]] = {}
    service = None
    for line in config.splitlines():
        if m := re.fullmatch(r"  ([a-z][\w-]*):", line):
            service = m.group(1)
        elif service and (m := re.fullmatch(r"\s+- (\S+):(/\S+):ro", line)):
            out.setdefault(service, []).append(m.group(2))
    return out


def test_read_only_mounts_are_read_only(stack: Stack) -> None:
    declared = _declared_read_only(stack)
    assert {"/mosquitto/config/mosquitto.conf", "/mosquitto/config/acl", "/mosquitto/config/conf.d"} <= \
        set(declared.get("mosquitto", [])), declared
    assert "/run/udev" in declared.get("recorder", []), declared
    for service, paths in declared.items():
        mounts = {m["Destination"]: m for m in stack.inspect(stack.container(service))[0]["Mounts"]}
        for path in paths:
            assert mounts[path]["RW"] is False, f"{service}:{path} is mounted read-write"
            # As root inside the container, so that only the mount (not file permissions) can refuse it.
            write = f'if [ -d "{path}" ]; then touch "{path}/.ezrec-write-test"; else touch "{path}"; fi'
            proc = stack.exec(service, "sh", "-c", write, user="0", check=False)
            assert proc.returncode != 0 and "Read-only file system" in proc.stderr, \
                f"{service}:{path} accepted a write: {proc.stderr}"


def test_broker_refuses_anonymous_and_wrong_passwords_and_is_not_published(stack: Stack) -> None:
    def sub(*auth: str) -> tuple[int, str]:
        proc = stack.exec("mosquitto", "mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", *auth,
                          "-t", "$SYS/broker/uptime", "-C", "1", "-W", "5", check=False)
        return proc.returncode, proc.stdout + proc.stderr

    code, out = sub()
    assert code != 0 and "not authorised" in out.lower(), out
    code, out = sub("-u", "api", "-P", "wrong-password")
    assert code != 0 and "not authorised" in out.lower(), out
    env = (stack.dir / ".env").read_text()
    good = re.search(r"^MQTT_PASSWORD_HEALTHCHECK=(\S+)$", env, re.M).group(1)
    code, out = sub("-u", "healthcheck", "-P", good)
    assert code == 0, f"the positive control failed, so the refusals above prove nothing: {out}"

    for name, cid in stack.containers().items():
        ports = stack.inspect(cid)[0]["NetworkSettings"]["Ports"] or {}
        published = {p: b for p, b in ports.items() if b}
        if name == "api":
            assert list(published) == ["8000/tcp"], published
            assert [(b["HostIp"], b["HostPort"]) for b in published["8000/tcp"]] == \
                [("127.0.0.1", stack.api_url.rsplit(":", 1)[1])]
        else:
            assert not published, f"{name} publishes {published}"
    assert not stack.inspect(stack.container("mosquitto"))[0]["HostConfig"]["PortBindings"]


def test_api_refuses_requests_without_the_token(stack: Stack) -> None:
    base = stack.api_url
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": stack.token}):
        for path in ("/bookings", "/videos", "/status"):
            assert httpx.get(f"{base}{path}", headers=headers, timeout=10).status_code == 401, (path, headers)
    assert httpx.post(f"{base}/bookings", json={}, timeout=10).status_code == 401


def test_the_operator_restarts_each_service_through_the_api(stack: Stack, api: httpx.Client) -> None:
    """POST /device/services/<service>/restart: the service stops cleanly and exits with 75, and compose's
    `restart: unless-stopped` starts its container again (Docker's RestartCount counts only restarts its policy
    made); no Docker socket, no shell. The CLI works inside the api container as the README says."""
    restarted = {}
    for service in ("status", "worker", "recorder", "api"):
        container = stack.container(service)
        before = stack.inspect(container)[0]["RestartCount"]
        answer = api.post(f"/device/services/{service}/restart", json={"reason": "test-containers"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ack"]["outcome"] == "accepted", answer.json()
        started = time.monotonic()
        _wait(lambda c=container, b=before: stack.inspect(c)[0]["RestartCount"] > b
              and stack.inspect(c)[0]["State"]["Running"], 60, f"Docker to restart {service}", stack)

        def back(name: str = service) -> bool:
            try:
                listed = {s["service"]: s for s in api.get("/device/services").json()}
            except (httpx.HTTPError, ValueError):
                return False
            return listed.get(name, {}).get("availability") == "online"

        _wait(back, 60, f"{service} online again", stack)
        restarted[service] = round(time.monotonic() - started, 1)
        assert stack.container(service) == container, "the same container, restarted by its policy"
    REPORT["operator_restart_s"] = restarted
    stack.wait_healthy(ALL_SERVICES, timeout=120)

    listed = stack.exec("api", "ezrec", "device", "services")
    assert all(f"{name:<16} online" in listed.stdout for name in APP_SERVICES), listed.stdout
    logs = stack.exec("api", "ezrec", "device", "logs", "recorder")
    assert "restarting on the operator's request" in logs.stdout and "test-containers" in logs.stdout
    assert stack.token not in logs.stdout + listed.stdout
    no_cloud = stack.exec("api", "ezrec", "outbox", "list", check=False)
    assert no_cloud.returncode == 1 and "no cloud outbox" in no_cloud.stderr


# ---- the bookings ----

def _segments(stack: Stack, booking: str) -> int:
    """Segment files the recorder has under way for a booking, read through the api container's mount."""
    proc = stack.exec("api", "sh", "-c", f"ls /data/recordings/raw/{booking} 2>/dev/null", check=False)
    return sum(1 for name in proc.stdout.split() if re.fullmatch(r"seg-\d{5}\.mp4", name))


def _wait(condition, timeout: float, what: str, stack: Stack, step: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.tail_logs()}")
        time.sleep(step)


class StatusWatch:
    """Polls the bookings' statuses in the background from creation on: every change, with the time seen."""

    def __init__(self, client: httpx.Client, bookings: list[str]) -> None:
        self.client = client
        self.seen: dict[str, list[tuple[str, datetime]]] = {b: [] for b in bookings}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for booking, changes in self.seen.items():
                try:
                    status = self.client.get(f"/bookings/{booking}").json()["status"]
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.errors.append(repr(exc))
                    continue
                if not changes or changes[-1][0] != status:
                    changes.append((status, utc_now()))

    def statuses(self, booking: str) -> list[str]:
        return [status for status, _ in self.seen[booking]]

    def reached(self, booking: str, status: str) -> datetime | None:
        return next((at for s, at in self.seen[booking] if s == status), None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _check_video(path: Path, booking_s: float, min_recorded_s: float) -> dict[str, float]:
    """Intro in front, the logo on every recording frame (and not on the intro), the right length."""
    info = probe(path)
    assert (info["width"], info["height"], info["pix_fmt"]) == (WIDTH, HEIGHT, "yuv420p"), info
    recorded = info["duration"] - INTRO_S
    assert min_recorded_s - 0.25 <= recorded <= booking_s + 0.25, (recorded, min_recorded_s, info)
    intro_frames = round(INTRO_S * FPS)
    last = info["frames"] - 3
    frames = frames_rgb(path, [2, intro_frames - 3, intro_frames + 3, last])
    corner = (slice(HEIGHT - 60, HEIGHT - 20), slice(20, 100))  # away from the logo and the intro's marker
    lw = round(WIDTH * 0.15)  # default placement: top-right, 15 % of the width, 2 % margin
    x0, y0 = WIDTH - round(WIDTH * 0.02) - lw, round(WIDTH * 0.02)
    logo = (slice(y0 + lw // 4 - 3, y0 + lw // 4 + 3), slice(x0 + lw // 2 - 3, x0 + lw // 2 + 3))
    for i in (2, intro_frames - 3):
        assert np.abs(frames[i][corner].reshape(-1, 3).mean(axis=0) - INTRO_RGB).max() < 30, f"frame {i} not intro"
        assert np.abs(frames[i][logo].reshape(-1, 3).mean(axis=0) - LOGO_RED).max() > 100, "logo on the intro"
    for i in (intro_frames + 3, last):
        assert np.abs(frames[i][corner].reshape(-1, 3).mean(axis=0) - INTRO_RGB).max() > 60, f"frame {i} is intro"
        patch = frames[i][logo].reshape(-1, 3).mean(axis=0)
        assert np.abs(patch - LOGO_RED).max() < 60, f"logo missing in recording frame {i}: {patch}"
    return {"duration_s": round(info["duration"], 3), "recorded_s": round(recorded, 3), "frames": info["frames"]}


def test_two_bookings_survive_a_worker_restart_and_a_recorder_kill(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    intro = make_intro(tmp_path / "intro.mp4", INTRO_S, size=(WIDTH, HEIGHT), fps=25)
    logo = make_logo_png(tmp_path / "logo.png", size=(64, 32), rgba=(255, 0, 0, 255))
    assert api.put(f"/users/{USER}/media/intro", files={"file": ("intro.mp4", intro.read_bytes())}).is_success
    assert api.put(f"/users/{USER}/media/logo", files={"file": ("logo.png", logo.read_bytes())}).is_success

    a_start = (utc_now() + timedelta(seconds=8)).replace(microsecond=0)
    a_end = a_start + timedelta(seconds=A_S)
    b_start = a_end + timedelta(seconds=3)
    b_end = b_start + timedelta(seconds=B_S)
    bookings = [{"id": "ct-a", "user_id": USER, "start_time": isoformat_z(a_start), "end_time": isoformat_z(a_end)},
                {"id": "ct-b", "user_id": USER, "start_time": isoformat_z(b_start), "end_time": isoformat_z(b_end)}]
    created = api.post("/bookings", json=bookings)
    assert created.status_code == 201, created.text
    watch = StatusWatch(httpx.Client(base_url=stack.api_url, headers=api.headers, timeout=10), ["ct-a", "ct-b"])
    try:
        _bookings_through_restarts(stack, api, tmp_path, watch, a_start, a_end, b_start, b_end)
    finally:
        watch.stop()
        watch.client.close()


def _bookings_through_restarts(stack: Stack, api: httpx.Client, tmp_path: Path, watch: StatusWatch,
                               a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> None:

    # The worker restarts while booking A is being recorded (segments are already behind it).
    _wait(lambda: _segments(stack, "ct-a") >= 3, A_S + 20, "booking A's segments", stack)
    restart_at = utc_now()
    assert a_start < restart_at < a_end - timedelta(seconds=2), "too late for a mid-booking restart"
    started = time.monotonic()
    stack.compose("restart", "-t", "30", "worker")
    worker_restart_s = time.monotonic() - started

    # The recorder's container dies (kill -9 of its PID 1) while booking B is being recorded.
    recorder = stack.container("recorder")
    restarts = stack.inspect(recorder)[0]["RestartCount"]
    _wait(lambda: _segments(stack, "ct-b") >= 3, (b_start - utc_now()).total_seconds() + B_S, "B's segments", stack)
    killed_at = utc_now()
    assert killed_at < b_end - timedelta(seconds=4), "too late for a mid-booking kill"
    if host_kill_9(recorder):
        _wait(lambda: stack.inspect(recorder)[0]["RestartCount"] > restarts
              and stack.inspect(recorder)[0]["State"]["Running"], 60, "Docker to restart the recorder", stack)
    else:  # the daemon's processes are out of reach (a VM): the same signal through Docker, then a start
        docker("kill", "--signal", "KILL", recorder)
        stack.compose("start", "recorder")
    recorder_back_at = utc_now()

    # Both bookings reach video_uploaded, their statuses only ever moving forward.
    order = ["confirmed", "completed", "video_processed", "video_uploaded"]
    _wait(lambda: all(watch.reached(b, "video_uploaded") for b in ("ct-a", "ct-b")),
          (b_end - utc_now()).total_seconds() + 120, "both videos", stack, step=0.2)
    uploaded_at = {b: watch.reached(b, "video_uploaded") for b in ("ct-a", "ct-b")}
    for booking in ("ct-a", "ct-b"):
        statuses = watch.statuses(booking)
        assert statuses[0] == "confirmed", statuses
        assert statuses == sorted(statuses, key=order.index), f"{booking} went backwards: {statuses}"

    # Exactly one video each, in the API and on the volume (`<user>/<booking>.mp4`: a file, or a splice's folder).
    files = stack.exec("api", "find", "/data/files/videos", "-mindepth", "2", "-maxdepth", "2",
                       "-name", "*.mp4").stdout.split()
    assert sorted(Path(f).name for f in files) == ["ct-a.mp4", "ct-b.mp4"], files
    results = {}
    for booking, length, min_recorded in (("ct-a", A_S, A_S),
                                          ("ct-b", B_S, (killed_at - b_start).total_seconds() - SEGMENT_S)):
        videos = api.get("/videos", params={"booking_id": booking}).json()
        assert len(videos) == 1, videos
        download = api.get(f"/videos/{videos[0]['id']}/download")
        assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
        out = tmp_path / f"{booking}.mp4"
        out.write_bytes(download.content)
        results[booking] = _check_video(out, length, min_recorded)
        results[booking]["sha256"] = hashlib.sha256(download.content).hexdigest()
    assert stack.inspect(recorder)[0]["RestartCount"] == restarts + 1, "the recorder restarted once"

    DOWNLOADED.update({b: r["sha256"] for b, r in results.items()})
    REPORT["first_video"] = {
        "booking_end_to_uploaded_s": round((uploaded_at["ct-a"] - a_end).total_seconds(), 2),
        "up_to_first_video_uploaded_s": round(time.monotonic() - stack.up_started
                                              - (utc_now() - uploaded_at["ct-a"]).total_seconds(), 1),
        "booking_started_after_up_s": round(time.monotonic() - stack.up_started
                                            - (utc_now() - a_start).total_seconds(), 1),
    }
    REPORT["bookings"] = {
        "ct-a": {**results["ct-a"], "worker_restarted_after_start_s": round((restart_at - a_start).total_seconds(), 1),
                 "worker_restart_s": round(worker_restart_s, 1), "statuses": watch.statuses("ct-a")},
        "ct-b": {**results["ct-b"], "recorder_killed_after_start_s": round((killed_at - b_start).total_seconds(), 1),
                 "recorder_back_after_s": round((recorder_back_at - killed_at).total_seconds(), 1),
                 "booking_end_to_uploaded_s": round((uploaded_at["ct-b"] - b_end).total_seconds(), 2),
                 "statuses": watch.statuses("ct-b")},
    }


DOWNLOADED: dict[str, str] = {}


def test_down_and_up_keep_bookings_and_videos(stack: Stack, api: httpx.Client) -> None:
    assert DOWNLOADED, "runs after the bookings test"
    started = time.monotonic()
    stack.compose("down", timeout=180)
    down_s = time.monotonic() - started
    assert not stack.containers()
    volumes = docker("volume", "ls", "-q", "--filter", f"name={PROJECT}_").stdout.split()
    assert {f"{PROJECT}_ezrec-data", f"{PROJECT}_mosquitto-data"} <= set(volumes), volumes

    started = time.monotonic()
    stack.compose("up", "-d", timeout=300)
    healthy = stack.wait_healthy(ALL_SERVICES, timeout=120)
    REPORT["second_up"] = {"down_s": round(down_s, 1), "all_healthy_after_up_s": round(time.monotonic() - started, 1),
                           "healthy_after_container_start_s": healthy}

    listed = {b["id"]: b["status"] for b in api.get("/bookings", params={"user_id": USER}).json()}
    assert listed == {"ct-a": "video_uploaded", "ct-b": "video_uploaded"}, listed
    for booking, digest in DOWNLOADED.items():
        [video] = api.get("/videos", params={"booking_id": booking}).json()
        download = api.get(f"/videos/{video['id']}/download")
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == digest, f"{booking}'s video changed"
    settings = api.get(f"/users/{USER}/settings")
    assert settings.status_code == 200, settings.text
    assert settings.json()["intro_video_path"] and settings.json()["logo_path"], settings.text


def _buildkit() -> tuple[list[str], dict[str, str]] | None:
    """A way to build with BuildKit here: the buildx plugin, or a docker CLI older than 23 (BuildKit built in)."""
    if docker("buildx", "version", check=False).returncode == 0:
        return ["docker", "buildx", "build", "--load"], {}
    for cli in dict.fromkeys(filter(None, (shutil.which("docker"), "/usr/bin/docker"))):
        proc = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True)
        if proc.stdout and int(proc.stdout.split(".")[0]) < 23:
            return [cli, "build"], {"DOCKER_BUILDKIT": "1"}
    return None


def test_buildkit_builds_both_images_without_a_registry(stack: Stack) -> None:
    """No `# syntax=` line means no frontend image to pull: BuildKit builds from the local base image alone."""
    found = _buildkit()
    if found is None:
        pytest.skip("no BuildKit here: this docker CLI needs the buildx plugin, which Debian bookworm does not package")
    cmd, extra_env = found
    env = {**os.environ, **extra_env}
    timings = {}
    for target, tag, args in (("app", "ezrec-buildkit/ezrec:test", []),
                              ("recorder", "ezrec-buildkit/recorder:test", ["--build-arg", "WITH_PICAMERA=0"])):
        started = time.monotonic()
        proc = subprocess.run([*cmd, "--target", target, *args, "-t", tag, "."], cwd=stack.dir, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        timings[target] = round(time.monotonic() - started, 1)
        try:
            out = docker("run", "--rm", "--entrypoint", "sh", tag, "-c", "id -u && ezrec --help").stdout
            assert out.splitlines()[0] == "10001" and "recorder,worker,status" in out, out
        finally:
            docker("image", "rm", tag, check=False)
    REPORT["buildkit"] = {"builder": " ".join(cmd) + (" (DOCKER_BUILDKIT=1)" if extra_env else ""),
                          "seconds": timings}
