"""The FastAPI application: bookings, videos, media and status for the venue's app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api.deps import AppState
from services.api.routes import bookings, health, media, status, videos
from services.api.schedule import SchedulePublisher
from shared.bus import MqttBus
from shared.settings import Settings
from shared.store import Store, open_store

log = logging.getLogger(__name__)


def create_app(settings: Settings, store: Store | None = None, bus: MqttBus | None = None) -> FastAPI:
    if settings.api_token is None:
        raise ValueError("API_TOKEN is not set: refusing to serve an API without authentication")
    store = store or open_store(settings)
    bus = bus or MqttBus(settings, "api")
    state = AppState(settings=settings, store=store, bus=bus, schedule=SchedulePublisher(settings, store, bus))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus.start()
        # The retained snapshot must reflect the store even if the broker lost it (no persistence).
        state.schedule.publish(settings.camera_id)
        yield
        bus.stop()

    app = FastAPI(
        title="EZREC device API",
        version="1",
        description="Bookings, finished videos, media and device status for one court camera. "
        "Every endpoint except /health needs `Authorization: Bearer <API_TOKEN>`.",
        lifespan=lifespan,
    )
    app.state.ezrec = state
    for module in (health, bookings, videos, media, status):
        app.include_router(module.router)
    return app
