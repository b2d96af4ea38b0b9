"""The committed broker config and ACL, enforced by a real mosquitto.

The test broker runs the committed mosquitto.conf with only the listener port and the file locations
(persistence, password file, ACL, conf.d) moved to a temp dir, the committed ACL, and a password file
written by services/deploy/passwords.py (so this also proves mosquitto accepts our Python-computed
`$7$` hashes).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from services.deploy import passwords

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "mosquitto" / "mosquitto.conf"
ACL = REPO / "mosquitto" / "acl"
BRIDGE_EXAMPLE = REPO / "mosquitto" / "bridge.conf.example"
REWRITTEN = ("listener", "persistence_location", "password_file", "acl_file", "include_dir")
_ids = count(1)


def _directives(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def rewrite_conf(text: str, port: int, workdir: Path) -> str:
    """The committed config with only the port and file locations moved into `workdir`."""
    replacements = {
        "persistence_location": f"{workdir / 'data'}/",
        "password_file": str(workdir / "passwd"),
        "acl_file": str(workdir / "acl"),
        "include_dir": str(workdir / "conf.d"),
    }
    seen: list[str] = []
    out = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in REWRITTEN:
            seen.append(words[0])
            if words[0] == "listener":
                words[1] = str(port)  # any bind address after the port stays as committed
            else:
                words[1:] = [replacements[words[0]]]
            line = " ".join(words)
        out.append(line)
    assert sorted(seen) == sorted(REWRITTEN), f"expected each of {REWRITTEN} exactly once, saw {seen}"
    return "\n".join(out) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto running the committed config in a private directory (`extra`: files for conf.d)."""

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
        self.binary, self.workdir, self.port = binary, workdir, _free_port()
        assert passwords.main(["--root", str(workdir)]) == 0
        self.env = passwords.parse_env((workdir / ".env").read_text())
        shutil.copyfile(workdir / "mosquitto" / "passwd", workdir / "passwd")
        shutil.copyfile(ACL, workdir / "acl")
        (workdir / "data").mkdir()
        (workdir / "conf.d").mkdir()
        for name, text in (extra or {}).items():
            (workdir / "conf.d" / name).write_text(text)
        (workdir / "mosquitto.conf").write_text(rewrite_conf(CONF.read_text(), self.port, workdir))
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to its `mosquitto` user before reading the password file,
            # exactly as in the container, whose entrypoint chowns /mosquitto for the same reason.
            user = pwd.getpwnam("mosquitto")
            os.chmod(workdir, 0o755)
            for path in (workdir / "passwd", workdir / "data"):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.log = workdir / "broker.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.workdir / "mosquitto.conf")],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def password(self, user: str) -> str:
        return self.env[passwords.env_key_for(user)]


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    workdir = Path(tempfile.mkdtemp(prefix="ezrec-mosquitto-"))
    b = Broker(workdir)
    b.start()
    yield b
    b.stop()
    shutil.rmtree(workdir, ignore_errors=True)


class Client:
    """A paho MQTT v5 client that records connect result, messages and PUBACK reason codes."""

    def __init__(self, port: int, user: str | None, password: str | None, *, subscribe: str | None = None,
                 will: tuple[str, bytes] | None = None, expect_ok: bool = True) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.acks: dict[int, ReasonCode] = {}
        self.cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{next(_ids)}",
                                  protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *_: self._notify("subscribed", True)
        self.subscribed = False
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        with self.cond:
            assert self.cond.wait_for(lambda: self.connack is not None, 5), "no CONNACK"
        if expect_ok:
            assert not self.connack.is_failure, f"{user} could not log in: {self.connack}"
        if subscribe is not None:
            self.client.subscribe(subscribe, qos=1)
            with self.cond:
                assert self.cond.wait_for(lambda: self.subscribed, 5), "no SUBACK"

    def _notify(self, attr: str, value: object) -> None:
        with self.cond:
            setattr(self, attr, value)
            self.cond.notify_all()

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self.client.disconnect()  # no automatic retries of a refused login
        self._notify("connack", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self.cond:
            self.acks[mid] = reason
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """QoS 1 publish; returns the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, 5), f"no PUBACK for {topic}"
            return self.acks[info.mid]

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 5) -> tuple[str, bytes, bool]:
        def match() -> tuple[str, bytes, bool] | None:
            return next((m for m in self.messages if m[0] == topic and payload in (None, m[1])), None)

        with self.cond:
            found = self.cond.wait_for(match, timeout)
        assert found, f"{topic} {payload!r} not received; got {self.messages}"
        return found

    def topics(self) -> list[str]:
        with self.cond:
            return [m[0] for m in self.messages]

    def close(self, reason: ReasonCode | None = None) -> None:
        self.client.disconnect(reasoncode=reason)
        self.client.loop_stop()


@pytest.fixture
def connect(broker: Broker) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def _connect(user: str, **kwargs: object) -> Client:
        client = Client(broker.port, user, broker.password(user), **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()


def _refused(port: int, user: str | None, password: str | None) -> ReasonCode:
    client = Client(port, user, password, expect_ok=False)
    client.client.loop_stop()
    assert client.connack is not None
    return client.connack


def test_committed_config() -> None:
    """The deployment choices themselves, as committed (the broker below runs them)."""
    conf = {words[0]: words[1:] for words in _directives(CONF.read_text()) if words[0] != "log_type"}
    assert conf["listener"] == ["1883"], "one listener on 1883, all interfaces inside the container"
    assert conf["allow_anonymous"] == ["false"]
    assert conf["persistence"] == ["true"]
    assert conf["persistence_location"] == ["/mosquitto/data/"]
    assert int(conf["autosave_interval"][0]) <= 60
    assert conf["password_file"] == ["/mosquitto/config/passwd"]
    assert conf["acl_file"] == ["/mosquitto/config/acl"]
    assert conf["log_dest"] == ["stdout"]
    assert conf["include_dir"] == ["/mosquitto/config/conf.d"]


def test_rewrite_touches_only_port_and_paths(tmp_path: Path) -> None:
    committed = CONF.read_text().splitlines()
    rewritten = rewrite_conf(CONF.read_text(), 12345, tmp_path).splitlines()
    changed = [a.split()[0] for a, b in zip(committed, rewritten, strict=True) if a != b]
    assert sorted(changed) == sorted(REWRITTEN)


def test_anonymous_login_is_refused(broker: Broker) -> None:
    reason = _refused(broker.port, None, None)
    assert reason.is_failure, reason


def test_wrong_password_is_refused(broker: Broker) -> None:
    reason = _refused(broker.port, "recorder", broker.password("api"))
    assert reason.is_failure, reason
    assert _refused(broker.port, "nobody", "x").is_failure


@pytest.mark.parametrize("user", passwords.BROKER_USERS)
def test_every_generated_user_logs_in(connect: Callable[..., Client], user: str) -> None:
    connect(user)


def test_recorder_event_reaches_api_and_worker(connect: Callable[..., Client]) -> None:
    api = connect("api", subscribe="ezrec/#")
    worker = connect("worker", subscribe="ezrec/+/recording/#")
    recorder = connect("recorder")
    assert not recorder.publish("ezrec/cam1/recording/finished", b'{"v": 1}').is_failure
    api.wait_for("ezrec/cam1/recording/finished", b'{"v": 1}')
    worker.wait_for("ezrec/cam1/recording/finished", b'{"v": 1}')


def test_recorder_cannot_publish_worker_topics(connect: Callable[..., Client]) -> None:
    api = connect("api", subscribe="ezrec/#")
    recorder = connect("recorder")
    reason = recorder.publish("ezrec/cam1/video/uploaded", b"forged")
    assert reason.is_failure, f"broker accepted a denied publish: {reason}"
    # The sentinel goes out after the broker answered the forged publish: once it arrives, anything the
    # broker had delivered from the forged one would have arrived before it.
    recorder.publish("ezrec/cam1/recording/started", b"sentinel")
    api.wait_for("ezrec/cam1/recording/started", b"sentinel")
    assert "ezrec/cam1/video/uploaded" not in api.topics()


def test_worker_cannot_publish_recorder_availability(connect: Callable[..., Client]) -> None:
    status = connect("status", subscribe="ezrec/#")
    worker = connect("worker")
    assert worker.publish("ezrec/cam1/recorder/availability", b"online", retain=True).is_failure
    assert not worker.publish("ezrec/cam1/worker/availability", b"online", retain=True).is_failure
    status.wait_for("ezrec/cam1/worker/availability", b"online")
    assert "ezrec/cam1/recorder/availability" not in status.topics()
    # Nor was it retained for later subscribers.
    late = connect("status", subscribe="ezrec/cam1/+/availability")
    late.wait_for("ezrec/cam1/worker/availability", b"online")
    assert "ezrec/cam1/recorder/availability" not in late.topics()


def test_readers_see_only_their_topics(connect: Callable[..., Client]) -> None:
    recorder = connect("recorder", subscribe="ezrec/#")
    worker = connect("worker")
    api = connect("api")
    assert not worker.publish("ezrec/cam2/video/processed", b"{}").is_failure
    assert not api.publish("ezrec/cam2/bookings", b"schedule", retain=True).is_failure
    recorder.wait_for("ezrec/cam2/bookings", b"schedule")
    assert recorder.topics() == ["ezrec/cam2/bookings"]


def test_retained_availability_and_last_will(connect: Callable[..., Client]) -> None:
    topic = "ezrec/cam3/recorder/availability"
    recorder = connect("recorder", will=(topic, b"offline"))
    assert not recorder.publish(topic, b"online", retain=True).is_failure
    status = connect("status", subscribe="ezrec/cam3/+/availability")
    assert status.wait_for(topic, b"online")[2] is True, "availability is not retained"
    # A crash: the broker publishes the will. (0x04 = disconnect *with* will message.)
    recorder.close(ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    status.wait_for(topic, b"offline")
    late = connect("api", subscribe=topic)
    assert late.wait_for(topic, b"offline")[2] is True


def test_workers_share_recording_events(connect: Callable[..., Client]) -> None:
    """Scaling out (docs/deploy.md): workers in a v5 shared subscription pass the ACL."""
    worker = connect("worker", subscribe="$share/workers/ezrec/+/recording/#")
    connect("recorder").publish("ezrec/cam4/recording/finished", b"job")
    worker.wait_for("ezrec/cam4/recording/finished", b"job")


def test_healthcheck_user_reads_uptime_only(connect: Callable[..., Client]) -> None:
    """What the compose healthcheck does: log in and read the retained $SYS uptime."""
    health = connect("healthcheck", subscribe="$SYS/broker/uptime")
    health.wait_for("$SYS/broker/uptime")
    assert health.publish("ezrec/cam1/status", b"{}").is_failure


def test_status_publishes_home_assistant_discovery(connect: Callable[..., Client]) -> None:
    status = connect("status")
    assert not status.publish("homeassistant/sensor/ezrec_cam1/config", b"{}", retain=True).is_failure
    assert connect("api").publish("homeassistant/sensor/ezrec_cam1/config", b"{}").is_failure


def test_retained_state_survives_a_restart() -> None:
    """persistence true: a broker restart (or a clean container stop) keeps retained availability."""
    workdir = Path(tempfile.mkdtemp(prefix="ezrec-mosquitto-"))
    broker = Broker(workdir)
    try:
        broker.start()
        topic = "ezrec/cam5/recorder/availability"
        recorder = Client(broker.port, "recorder", broker.password("recorder"))
        assert not recorder.publish(topic, b"online", retain=True).is_failure
        recorder.close()
        broker.stop()
        assert (workdir / "data" / "mosquitto.db").exists(), "no persistence file in persistence_location"
        broker.start()
        status = Client(broker.port, "status", broker.password("status"), subscribe=topic)
        assert status.wait_for(topic, b"online")[2] is True
        status.close()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_bridge_example_forwards_with_prefix() -> None:
    """bridge.conf.example, dropped into conf.d, carries court topics to a central broker.

    Only what cannot work offline is changed: the address points at a second local broker, and the
    two TLS lines go (that broker listens in plain text). COURT becomes court7 as the operator would.
    """
    example = BRIDGE_EXAMPLE.read_text().replace("COURT", "court7")
    central_dir = Path(tempfile.mkdtemp(prefix="ezrec-central-"))
    central_port = _free_port()
    (central_dir / "central.conf").write_text(f"listener {central_port} 127.0.0.1\nallow_anonymous true\n")
    central = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                str(central_dir / "central.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = []
    for line in example.splitlines():
        words = line.split()
        if words and words[0] == "address":
            line = f"address 127.0.0.1:{central_port}"
        elif words and words[0] in ("bridge_capath", "bridge_insecure"):
            continue
        lines.append(line)
    workdir = Path(tempfile.mkdtemp(prefix="ezrec-mosquitto-"))
    court = Broker(workdir, extra={"bridge.conf": "\n".join(lines) + "\n"})
    try:
        court.start()
        watcher = Client(central_port, "central", None, subscribe="courts/#")
        # The bridge connects in the background; retained state is forwarded as soon as it is up.
        status = Client(court.port, "status", court.password("status"))
        assert not status.publish("ezrec/cam1/status", b'{"ok": true}', retain=True).is_failure
        watcher.wait_for("courts/court7/ezrec/cam1/status", b'{"ok": true}', timeout=10)
        # Not everything leaves the court: recording events stay local.
        recorder = Client(court.port, "recorder", court.password("recorder"))
        recorder.publish("ezrec/cam1/recording/finished", b"local")
        recorder.publish("ezrec/cam1/recorder/availability", b"online", retain=True)
        watcher.wait_for("courts/court7/ezrec/cam1/recorder/availability", b"online")
        assert not any("recording" in topic for topic in watcher.topics())
        for client in (watcher, status, recorder):
            client.close()
    finally:
        court.stop()
        central.terminate()
        central.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(central_dir, ignore_errors=True)


SERVICE_USERS = ("api", "recorder", "worker", "status")


def test_only_the_api_user_publishes_commands(connect: Callable[..., Client]) -> None:
    """Commands make a service exit (restart): anyone else on the broker must not be able to send one."""
    listeners = {user: connect(user, subscribe=f"ezrec/cam6/{user}/command") for user in SERVICE_USERS}
    api = connect("api")
    for user in ("recorder", "worker", "status", "healthcheck"):
        sender = connect(user)
        for target in SERVICE_USERS:
            reason = sender.publish(f"ezrec/cam6/{target}/command", b'{"forged": true}')
            assert reason.is_failure, f"{user} could publish a command for {target}: {reason}"
    for target in SERVICE_USERS:
        assert not api.publish(f"ezrec/cam6/{target}/command", target.encode()).is_failure
        listeners[target].wait_for(f"ezrec/cam6/{target}/command", target.encode())
    for user, listener in listeners.items():
        assert listener.topics() == [f"ezrec/cam6/{user}/command"], "only its own, and no forged one"


def test_a_service_reads_only_its_own_commands(connect: Callable[..., Client]) -> None:
    snoop = connect("worker", subscribe="ezrec/cam7/+/command")
    own = connect("recorder", subscribe="ezrec/cam7/recorder/command")
    api = connect("api")
    api.publish("ezrec/cam7/recorder/command", b"restart")
    api.publish("ezrec/cam7/worker/command", b"mine")
    own.wait_for("ezrec/cam7/recorder/command", b"restart")
    snoop.wait_for("ezrec/cam7/worker/command", b"mine")
    assert snoop.topics() == ["ezrec/cam7/worker/command"]


def test_each_service_publishes_its_own_logs_and_answers_only(connect: Callable[..., Client]) -> None:
    api = connect("api", subscribe="ezrec/cam8/#")
    for user in SERVICE_USERS:
        client = connect(user)
        assert not client.publish(f"ezrec/cam8/{user}/logs", b"{}", retain=True).is_failure
        assert not client.publish(f"ezrec/cam8/{user}/command/ack", b"{}").is_failure
        other = next(u for u in SERVICE_USERS if u != user)
        assert client.publish(f"ezrec/cam8/{other}/logs", b"forged", retain=True).is_failure
        assert client.publish(f"ezrec/cam8/{other}/command/ack", b"forged").is_failure
        if user != "api":
            assert client.publish("ezrec/cam8/operator/action", b"forged").is_failure
    assert not connect("worker").publish("ezrec/cam8/worker/logs/w2", b"{}", retain=True).is_failure
    assert not connect("api").publish("ezrec/cam8/operator/action", b"{}").is_failure
    api.wait_for("ezrec/cam8/operator/action", b"{}")
    assert b"forged" not in b"".join(payload for _, payload, _ in api.messages)
