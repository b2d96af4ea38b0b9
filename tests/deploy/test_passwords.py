"""`ezrec passwords`: mosquitto-compatible hashes, a `.env` that keeps what exists, no leaked secrets.

That a real broker accepts the generated file is tested in test_mosquitto_conf.py.
"""

from __future__ import annotations

import base64
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.deploy import passwords

HASH_LINE = re.compile(r"^([a-z]+):\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")


def _mosquitto_passwd() -> str:
    path = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(path).exists():
        pytest.fail("mosquitto_passwd is not installed: `make test` installs it (apt-get install mosquitto)")
    return path


def _run(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = passwords.main(["--root", str(root), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def _passwd(root: Path) -> dict[str, str]:
    lines = (root / "mosquitto" / "passwd").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines)


def test_hash_is_byte_identical_to_mosquitto_passwd(tmp_path: Path) -> None:
    """Same salt and iterations as a line written by mosquitto_passwd -> the very same line."""
    file = tmp_path / "passwd"
    subprocess.run([_mosquitto_passwd(), "-c", "-b", str(file), "api", "s3cret pass"], check=True,
                   capture_output=True)
    user, encoded = file.read_text().strip().split(":", 1)
    _, _, iterations, salt_b64, _ = encoded.split("$")
    ours = passwords.mosquitto_hash("s3cret pass", base64.b64decode(salt_b64), int(iterations))
    assert (user, ours) == ("api", encoded)
    assert int(iterations) == passwords.MOSQUITTO_ITERATIONS, "mosquitto's default changed"
    assert passwords.mosquitto_verify("s3cret pass", encoded)
    assert not passwords.mosquitto_verify("s3cret pasS", encoded)


def test_first_run_writes_both_files_privately(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _run(tmp_path, capsys=capsys)
    assert code == 0
    env = passwords.parse_env((tmp_path / ".env").read_text())
    entries = _passwd(tmp_path)
    assert list(entries) == list(passwords.BROKER_USERS)
    for line in (tmp_path / "mosquitto" / "passwd").read_text().splitlines():
        assert HASH_LINE.match(line), line
    for user in passwords.BROKER_USERS:
        secret = env[passwords.env_key_for(user)]
        assert len(secret) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", secret)
        assert passwords.mosquitto_verify(secret, entries[user])
        assert secret not in output, f"{user}'s password was printed"
    assert len({env[passwords.env_key_for(u)] for u in passwords.BROKER_USERS} | {env["API_TOKEN"]}) == 6
    assert output.count(env["API_TOKEN"]) == 1, "the new API token is shown exactly once"
    for path in (tmp_path / ".env", tmp_path / "mosquitto" / "passwd"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert str(path) in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "mosquitto"], "temp files left behind"
    assert [p.name for p in (tmp_path / "mosquitto").iterdir()] == ["passwd"]


def test_rerun_keeps_values_and_prints_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, capsys=capsys)
    before = (tmp_path / ".env").read_text()
    code, output = _run(tmp_path, capsys=capsys)
    assert code == 0
    assert (tmp_path / ".env").read_text() == before
    env = passwords.parse_env(before)
    assert not any(value in output for value in env.values())
    # passwd is re-derived (fresh salts) and still matches .env.
    for user, encoded in _passwd(tmp_path).items():
        assert passwords.mosquitto_verify(env[passwords.env_key_for(user)], encoded)


def test_existing_values_and_layout_survive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = (
        "# court 3\n"
        "CAMERA_ID=court3\n"
        "API_TOKEN=operator-chosen-token\n"
        "MQTT_PASSWORD_API=\n"
        "export MQTT_PASSWORD_WORKER='kept-worker-secret'\n"
        "SUPABASE_URL=https://example.invalid\n"
    )
    (tmp_path / ".env").write_text(original)
    (tmp_path / ".env").chmod(0o644)
    code, output = _run(tmp_path, capsys=capsys)
    assert code == 0
    text = (tmp_path / ".env").read_text()
    env = passwords.parse_env(text)
    lines = text.splitlines()
    assert lines[:3] == original.splitlines()[:3]
    assert lines[4:6] == original.splitlines()[4:6]
    assert env["API_TOKEN"] == "operator-chosen-token"
    assert "operator-chosen-token" not in output, "an existing token is not re-printed"
    assert env["MQTT_PASSWORD_WORKER"] == "kept-worker-secret"
    assert lines[3].startswith("MQTT_PASSWORD_API=") and len(env["MQTT_PASSWORD_API"]) >= 43, \
        "an empty value is filled in place"
    assert text.count("MQTT_PASSWORD_API=") == 1
    assert passwords.mosquitto_verify("kept-worker-secret", _passwd(tmp_path)["worker"])
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_force_replaces_every_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, capsys=capsys)
    before = passwords.parse_env((tmp_path / ".env").read_text())
    code, output = _run(tmp_path, "--force", capsys=capsys)
    assert code == 0
    after = passwords.parse_env((tmp_path / ".env").read_text())
    assert set(after) == set(before)
    assert all(after[key] != before[key] for key in before)
    assert output.count(after["API_TOKEN"]) == 1
    entries = _passwd(tmp_path)
    assert all(passwords.mosquitto_verify(after[passwords.env_key_for(u)], entries[u]) for u in entries)


def test_extra_broker_users_come_from_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".env").write_text("MQTT_PASSWORD_HOMEASSISTANT=\nMQTT_PASSWORD=local-run-only\n")
    assert _run(tmp_path, capsys=capsys)[0] == 0
    env = passwords.parse_env((tmp_path / ".env").read_text())
    entries = _passwd(tmp_path)
    assert list(entries) == [*passwords.BROKER_USERS, "homeassistant"]
    assert passwords.mosquitto_verify(env["MQTT_PASSWORD_HOMEASSISTANT"], entries["homeassistant"])
    assert env["MQTT_PASSWORD"] == "local-run-only"


def test_unwritable_root_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mosquitto").write_text("a file where the directory should be")
    code, output = _run(tmp_path, capsys=capsys)
    assert code == 1
    assert "cannot write secrets" in output
    assert "Traceback" not in output


def test_runs_before_any_install() -> None:
    """A fresh Pi has only python3: the module must not import the project's third-party packages."""
    code = ("import sys, services.deploy.passwords; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pydantic_settings', 'paho', "
            "'numpy', 'av', 'fastapi', 'uvicorn', 'psutil'}))")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
