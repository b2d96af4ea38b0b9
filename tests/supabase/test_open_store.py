"""Which store a service gets: Supabase when both variables are set, a clear error when only one is, and
background draining only where it belongs (not in the recorder's or the status service's process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.store import LocalStore, StoreError, open_store
from shared.store.cloud import SupabaseStore

ROOT = Path(__file__).resolve().parents[2]


def test_a_url_without_its_key_is_refused_with_the_fix_in_the_message(make_settings):
    settings = make_settings(supabase_url="http://127.0.0.1:9", supabase_service_role_key=None)
    with pytest.raises(StoreError, match="SUPABASE_SERVICE_ROLE_KEY is not"):
        open_store(settings)


def test_no_url_is_the_embedded_store(make_settings):
    store = open_store(make_settings(supabase_url=None, supabase_service_role_key=SecretStr("unused")))
    try:
        assert isinstance(store, LocalStore)
    finally:
        store.close()


def test_only_draining_processes_upload(cloud_settings, fake_cloud, tmp_path):
    recorder_side = open_store(cloud_settings, drain=False)
    assert isinstance(recorder_side, SupabaseStore)
    src = tmp_path / "v.mp4"
    src.write_bytes(b"\0" * 1000)
    try:
        recorder_side.put_object("videos", "u1/b1.mp4", src, "video/mp4")
        time.sleep(1.0)
        assert recorder_side.outbox.pending_count() == 1, "a non-draining process only queues"
        assert not fake_cloud.object_file("videos", "u1/b1.mp4").exists()
        worker_side = open_store(cloud_settings)  # drains in the background, from the same outbox file
        try:
            deadline = time.monotonic() + 20
            while not fake_cloud.object_file("videos", "u1/b1.mp4").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()
        finally:
            worker_side.close()
    finally:
        recorder_side.close()


def test_a_process_that_only_writes_never_loads_the_supabase_client(cloud_settings):
    """The recorder and the status service pay ~20 MB less: the client is made on first use only."""
    code = (
        "import sys\n"
        "from shared.settings import Settings\n"
        "from shared.store import open_store\n"
        "from shared.models import SystemStatusRow\n"
        "from shared.timeutil import utc_now\n"
        "store = open_store(Settings(), drain=False)\n"
        "store.put_system_status(SystemStatusRow(camera_id='cam1', collected_at=utc_now(), snapshot={}))\n"
        "store.videos_waiting_for_upload(); store.reclaimable_files()\n"
        "before = 'supabase' in sys.modules\n"
        "store.cloud\n"
        "print(before, 'supabase' in sys.modules)\n"
        "store.close()\n"
    )
    env = {**os.environ, "DATA_DIR": str(cloud_settings.data_dir), "SUPABASE_URL": cloud_settings.supabase_url,
           "SUPABASE_SERVICE_ROLE_KEY": "k", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "True"]
