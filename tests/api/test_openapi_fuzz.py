"""Schemathesis against the app's own OpenAPI schema, in process (ASGI): no 5xx, responses match the schema.

The schema is the one the app serves. Each operation gets a fresh app on one shared data dir (schemathesis
starts an app's lifespan, bus included, on first use and stops it at the test's teardown); a bounded,
derandomized number of examples per operation keeps the run well under a minute and repeatable.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.main import create_app
from services.api.routes import device as device_routes
from shared.settings import Settings
from tests.api.conftest import AUTH, seed_video
from tests.broker import Broker
from tests.conftest import TOKEN

EXAMPLES_PER_OPERATION = int(os.environ.get("EZREC_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def fuzz_settings(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One data dir for the module, with a real video in it, so the video routes also answer 200."""
    if not broker.running:
        broker.start()
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(_env_file=None, data_dir=tmp / "data", camera_id=f"fuzz{os.getpid()}x{next(_ids)}",
                         mqtt_port=broker.port, api_token=TOKEN)  # type: ignore[call-arg]
    settings_.ensure_dirs()
    seed_video(settings_, tmp, booking_id="fuzz-booking", user_id="u1")
    return settings_


@pytest.fixture
def fuzz_app(fuzz_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """A fresh app per operation: schemathesis starts its lifespan on first use and stops it at teardown. No service
    answers commands here (the API's own runtime is not attached in-process): their answers are not waited for."""
    monkeypatch.setattr(device_routes, "ACK_WAIT_S", 0.1)
    app = create_app(fuzz_settings)
    yield app
    shutdown_lifespans()


def _spec() -> dict:
    """The schema the app serves, built without a broker (the app connects only when its lifespan starts)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings_ = Settings(_env_file=None, data_dir=Path(tmp), api_token=TOKEN)  # type: ignore[call-arg]
        settings_.ensure_dirs()
        app = create_app(settings_)
        spec = app.openapi()
        app.state.ezrec.store.close()
        app.state.ezrec.bus.outbox.close()
    return spec


# /events never ends by itself; tests/api/test_events.py covers it against a real server.
schema = schemathesis.openapi.from_dict(_spec()).exclude(path="/events")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True, database=None)
def test_every_operation_conforms_to_the_schema(case: schemathesis.Case, fuzz_app: FastAPI) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS, app=fuzz_app)


def test_the_fuzz_covers_every_operation_but_the_event_stream() -> None:
    fuzzed = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    declared = {(method.upper(), path) for path, ops in _spec()["paths"].items() for method in ops}
    assert declared - fuzzed == {("GET", "/events")}
    assert len(fuzzed) >= 25
