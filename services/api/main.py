"""The FastAPI application: bookings, videos, media, status, live events and the dashboard."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from services.api.auth import Authenticator
from services.api.booking_rules import TIMES
from services.api.deps import UNAUTHORIZED, AppState
from services.api.device import DeviceWatch
from services.api.events import EventHub
from services.api.limits import BodySizeLimit
from services.api.missed import MissedSweeper, RecorderWatch
from services.api.read_cache import ReadCache
from services.api.routes import (
    bookings,
    dashboard,
    device,
    events,
    health,
    highlights,
    media,
    outbox,
    share,
    status,
    videos,
)
from services.api.schedule import SchedulePublisher
from services.api.share import ShareSigner
from services.api.thumbnail_maker import ThumbnailMaker
from shared.bus import MqttBus
from shared.logs import Redactor
from shared.runtime import secrets_of
from shared.settings import Settings
from shared.store import Store, open_store
from shared.sync import start_cloud_sync
from shared.thumbnails import ThumbnailCache, thumbnail_dir
from shared.topics import MEDIA_UPDATED

log = logging.getLogger(__name__)

_UPLOAD_PATH = re.compile(r"^/users/[^/]+/media/")
_MULTIPART_OVERHEAD = 64 * 1024

DESCRIPTION = """
Bookings, finished videos, media and device status for one court camera, plus live events and a
dashboard at [`/`](/).

**Auth.** Every endpoint needs `Authorization: Bearer <API_TOKEN>` (compared in constant time) except
`/health`, the dashboard shell (`/`, `/static/*`: it asks for the token), this description (`/docs`,
`/redoc`, `/openapi.json`: built from the code alone, no configuration or data) and share links
(`/share/{token}`: the signed token is the credential). When `SUPABASE_JWT_SECRET` or
`SUPABASE_JWKS_URL` is set, a Supabase user's access token may also *read* that user's own bookings,
videos and settings. `/events`, video downloads and thumbnails accept the token as `?token=` too, for
browser elements that cannot send headers.

**Limits.** Request bodies: `MAX_REQUEST_BODY_MB` (default 1 MB), media uploads `MAX_UPLOAD_MB`
(intros; logos 5 MB); larger bodies get a 413 even when sent chunked. Browser origins allowed by CORS:
`CORS_ORIGINS` (none by default).

**Paths** are exact: with a trailing slash they answer 404, never a redirect.

""" + TIMES + "\n"  # one source: services/api/booking_rules.py, also README's

TAGS = [
    {"name": "bookings", "description": "The schedule the recorder follows"},
    {"name": "videos", "description": "Finished videos: metadata, download, thumbnails, share links"},
    {"name": "share links", "description": "Public pages for shared videos; the signed token is the credential"},
    {"name": "media", "description": "Users' intro videos, logos and sponsor logos"},
    {"name": "status", "description": "Device health as reported by the status service"},
    {"name": "events", "description": "Live MQTT events as Server-Sent Events"},
    {"name": "device", "description": "The operator's device actions: services' recent warnings, restart a service, "
     "a status snapshot now (device token only)"},
    {"name": "cloud outbox", "description": "Cloud writes that have not gone through: replay or drop a refused one "
     "(device token only; 404 without Supabase)"},
    {"name": "health", "description": "Liveness without a token"},
    {"name": "dashboard", "description": "The operator's page"},
]


def create_app(settings: Settings, store: Store | None = None, bus: MqttBus | None = None) -> FastAPI:
    auth = Authenticator(settings)  # refuses to build an API without API_TOKEN
    assert settings.api_token is not None
    store = store or open_store(settings)
    bus = bus or MqttBus(settings, "api")
    hub = EventHub(settings.camera_id)
    bus.subscribe_retained(f"ezrec/{settings.camera_id}/#", hub.on_mqtt)
    bus.subscribe_retained(MEDIA_UPDATED, hub.on_mqtt)
    watch = RecorderWatch(settings)
    hub.listeners.append(watch.observe)
    device_watch = DeviceWatch(settings)
    hub.listeners.append(device_watch.observe)
    thumbnails = ThumbnailCache(thumbnail_dir(settings.data_dir))
    maker = ThumbnailMaker(store, thumbnails)
    hub.listeners.append(maker.observe)
    state = AppState(
        settings=settings, store=store, bus=bus, schedule=SchedulePublisher(settings, store, bus), auth=auth,
        hub=hub, shares=ShareSigner(settings.api_token.get_secret_value()),
        thumbnails=thumbnails, reads=ReadCache(store),
        device=device_watch, redact=Redactor(secrets_of(settings)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.attach(asyncio.get_running_loop())
        bus.start()
        # The retained snapshot must reflect the store even if the broker lost it (no persistence).
        state.schedule.publish(settings.camera_id)
        cloud_sync = start_cloud_sync(settings, store, bus, lambda: state.schedule.publish(settings.camera_id))
        missed = MissedSweeper(settings, store, watch, state.schedule.publish)
        missed.start()
        yield
        missed.stop()
        maker.close()
        if cloud_sync is not None:
            cloud_sync.stop()
        hub.close()
        bus.stop()

    # No trailing-slash redirects: a client that follows them (curl -L, requests) would turn
    # `DELETE /videos/{id}/share/` (an empty link id) into `DELETE /videos/{id}/share`, revoking every link.
    app = FastAPI(title="EZREC device API", version="1", description=DESCRIPTION, openapi_tags=TAGS,
                  lifespan=lifespan, redirect_slashes=False)
    app.state.ezrec = state

    body_limit = int(settings.max_request_body_mb * 1024 * 1024)
    upload_limit = settings.max_upload_mb * 1024 * 1024 + _MULTIPART_OVERHEAD
    app.add_middleware(BodySizeLimit, limit_for=lambda path: upload_limit if _UPLOAD_PATH.match(path) else body_limit)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "Content-Disposition"],
            max_age=600,
        )

    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    for module in (dashboard, health, bookings, highlights, videos, share, media, events):
        app.include_router(module.router)
    app.include_router(status.router, responses=UNAUTHORIZED)
    app.include_router(device.router)
    app.include_router(outbox.router)
    app.include_router(media.notify_router)
    return app
