from __future__ import annotations

import os
import stat

from services.cli import main
from shared.runtime import ServiceRuntime


def test_init_env_creates_a_token_once(tmp_path, capsys):
    env = tmp_path / ".env"
    env.write_text("CAMERA_ID=court7\n")
    assert main(["init-env", "--env-file", str(env)]) == 0
    first = env.read_text()
    token = next(line.split("=", 1)[1] for line in first.splitlines() if line.startswith("API_TOKEN="))
    assert len(token) >= 32 and "CAMERA_ID=court7" in first
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600
    assert main(["init-env", "--env-file", str(env)]) == 0
    assert env.read_text() == first, "an existing token is never replaced"


def test_health_follows_the_heartbeat(settings, monkeypatch, capsys):
    monkeypatch.chdir(settings.data_dir)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert main(["health", "worker"]) == 1
    runtime = ServiceRuntime("worker", settings)
    runtime.beat()
    assert main(["health", "worker"]) == 0
    assert "healthy" in capsys.readouterr().out
