"""`ezrec api`: uvicorn serving the FastAPI app."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn

from services.api.main import create_app
from shared.runtime import ServiceRuntime
from shared.settings import Settings

GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    """Ends the open /events streams as soon as shutdown starts: they never finish by themselves."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: object) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def _stop(server: _Server) -> None:
    """The operator's restart: what SIGTERM does (requests in flight finish, then the lifespan ends), without
    handle_exit, which notes the signal for uvicorn to raise again once it has stopped."""
    server._on_exit()
    server.should_exit = True


def run(settings: Settings) -> int:
    runtime = ServiceRuntime("api", settings)
    app = create_app(settings)
    bus = app.state.ezrec.bus
    config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    # uvicorn handles SIGINT/SIGTERM and shuts the lifespan (and the bus) down cleanly.
    server = _Server(config, app.state.ezrec.hub.close_threadsafe)
    runtime.attach(bus, stop=lambda: _stop(server))
    runtime.start_heartbeat(lambda: {"mqtt": bus.connected.is_set()})  # read by the status service
    server.run()
    runtime.stop.set()
    return 0
