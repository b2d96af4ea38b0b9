"""`ezrec api`: uvicorn serving the FastAPI app."""

from __future__ import annotations

import uvicorn

from services.api.main import create_app
from shared.runtime import ServiceRuntime
from shared.settings import Settings


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("api", settings)
    app = create_app(settings)
    runtime.start_heartbeat()
    # uvicorn installs its own SIGINT/SIGTERM handling and shuts the lifespan (and bus) down cleanly.
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False)
    runtime.stop.set()
    return 0
