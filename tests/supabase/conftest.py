"""Fixtures for the Supabase tests: a real PostgreSQL with the migrations applied, and the fake cloud
(tests/supabase/fakecloud.py) as a separate process that a test can stop, kill and bring back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from services.status.service import StatusService
from shared.bus import MqttBus
from shared.store.cloud import SupabaseStore
from tests.supabase import pg

KEY = "service-role-key-for-tests"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    scratch = Path(tempfile.mkdtemp(prefix="ezrec-pg-"))
    server = pg.find_or_start(scratch)
    yield server
    server.stop()
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def cloud_dsn(pg_server: pg.PgServer) -> Iterator[str]:
    """A fresh database for this test session: stand-ins for Supabase's auth/storage, then our migrations."""
    name = f"ezrec_test_{os.getpid()}"
    dsn = pg.create_database(pg_server, name)
    yield dsn
    pg.drop_database(pg_server, name)


@pytest.fixture
def db(cloud_dsn: str) -> Iterator[psycopg.Connection]:
    """Superuser connection to the test database, emptied before each test."""
    with psycopg.connect(cloud_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE public.bookings, public.videos, public.system_status, public.system_status_history,"
                     " public.user_settings, storage.objects")
        yield conn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeCloud:
    """The fake Supabase project, as a process on a fixed port (SUPABASE_URL stays valid across restarts)."""

    def __init__(self, root: Path, dsn: str) -> None:
        self.root, self.dsn = root, dsn
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> None:
        (self.root / "ready").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.supabase.fakecloud", "--port", str(self.port), "--root", str(self.root),
             "--dsn", self.dsn, "--key", KEY, *extra], cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake cloud exited with {self.proc.returncode}")
            if (self.root / "ready").exists():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("fake cloud did not start")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> list[dict[str, Any]]:
        path = self.root / "requests.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def requests(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if "method" in e]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("event") == kind]

    def clear_log(self) -> None:
        (self.root / "requests.jsonl").write_text("")

    def object_file(self, bucket: str, path: str) -> Path:
        return self.root / "objects" / bucket / path

    # ---- the fake's admin API (tests/supabase/fakecloud.py docstring) ----------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/__fake/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def inject(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        """Fault rules (method, path pattern, status, body, count, skip, phase, expire, delay_s)."""
        return self._admin("POST", "faults", list(rules))

    def faults(self) -> list[dict[str, Any]]:
        return self._admin("GET", "faults")

    def clear_faults(self) -> None:
        self._admin("DELETE", "faults")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """file_size_limit, db_max_rows, tus_expiry_s, tus_location_prefix, read_only."""
        return self._admin("POST", "config", settings)

    def expire_uploads(self) -> int:
        return self._admin("POST", "expire-uploads")["expired"]


@pytest.fixture
def fake_cloud(tmp_path: Path, cloud_dsn: str, db: psycopg.Connection) -> Iterator[FakeCloud]:
    cloud = FakeCloud(tmp_path / "cloud", cloud_dsn)
    cloud.root.mkdir()
    cloud.start()
    yield cloud
    cloud.kill()


@pytest.fixture
def cloud_settings(make_settings, fake_cloud: FakeCloud):
    return make_settings(supabase_url=fake_cloud.url, supabase_service_role_key=KEY, supabase_retry_min_s=0.2,
                         supabase_retry_max_s=1.0, supabase_storage_timeout_s=30)


@pytest.fixture
def make_store(cloud_settings) -> Iterator[Callable[..., SupabaseStore]]:
    stores: list[SupabaseStore] = []

    def _make(settings=None) -> SupabaseStore:
        store = SupabaseStore(settings or cloud_settings)
        stores.append(store)
        return store

    yield _make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store) -> SupabaseStore:
    return make_store()


@pytest.fixture
def status(cloud_settings, store) -> Iterator[StatusService]:
    """The real status service over `store`, connected to the test broker: it judges the cloud alerts."""
    bus = MqttBus(cloud_settings, "status")
    bus.start()
    assert bus.wait_connected(10)
    yield StatusService(cloud_settings, store, bus)
    bus.stop()


def drain(store: SupabaseStore, timeout: float = 20.0) -> None:
    """Drain in this thread until the outbox is empty (retrying through backoff)."""
    deadline = time.monotonic() + timeout
    while store.outbox.pending_count():
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained: {store.outbox.pending()[:3]}")
        if store.drainer.cloud_reachable:
            store.sync_now()
        else:
            time.sleep(0.05)
