"""API test fixtures: the real app on the real store and broker, in-process or served by uvicorn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.api.main import create_app
from shared.models import Video, storage_path_for_video, video_id_for
from shared.settings import Settings
from shared.spliced_file import SpliceBuilder
from shared.store import LocalStore
from shared.timeutil import isoformat_z, utc_now
from tests.broker import free_port
from tests.conftest import TOKEN
from tests.media import make_recording

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def booking_body(booking_id: str = "b1", start_in_s: float = 3600, seconds: float = 600, **extra: object) -> dict:
    start = utc_now() + timedelta(seconds=start_in_s)
    return {"id": booking_id, "user_id": "u1", "start_time": isoformat_z(start),
            "end_time": isoformat_z(start + timedelta(seconds=seconds)), **extra}


def seed_video(settings: Settings, tmp_path: Path, booking_id: str = "b1", user_id: str = "u1",
               seconds: float = 1.0, spliced: bool = False) -> tuple[Video, Path]:
    """A real H.264 MP4 stored as the worker would store it; returns the row and the source file.
    `spliced`: stored as a splice (the remux path's output: a written head, then the rest linked)."""
    store = LocalStore(settings.data_dir)
    clip = make_recording(tmp_path / f"{booking_id}.mp4", seconds)
    path = storage_path_for_video(user_id, booking_id)
    if spliced:
        builder = SpliceBuilder(tmp_path / f"{booking_id}-spliced.mp4")
        builder.span(builder.written("head.bin", clip.read_bytes()[:1000]), 0, 1000)
        builder.span(builder.source(clip), 1000, clip.stat().st_size - 1000)
        store.put_object("videos", path, builder.commit(), "video/mp4")
    else:
        store.put_object("videos", path, clip, "video/mp4")
    video = store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id=user_id,
                                     camera_id=settings.camera_id, storage_path=path,
                                     size_bytes=clip.stat().st_size, duration_seconds=seconds, uploaded_at=utc_now()))
    store.close()
    return video, clip


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


class LiveServer:
    """uvicorn on a free loopback port in a thread: for streams (SSE) and the browser."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert self.thread.is_alive(), "uvicorn exited"
            time.sleep(0.02)

    def stop(self) -> None:
        self.app.state.ezrec.hub.close_threadsafe()
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live_api(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def _start(**overrides: object) -> LiveServer:
        server = LiveServer(create_app(make_settings(**overrides)))
        server.start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
