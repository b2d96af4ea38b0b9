"""Property tests (hypothesis): every MQTT payload model and the booking parsers accept or reject any input with
pydantic's ValidationError (the documented error: the bus dead-letters on it, the API answers 422 with it), never
another exception, which would reach a handler as a crash instead of a set-aside message."""

from __future__ import annotations

import json
import string
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.api.schemas import BookingsIn
from services.recorder.schedule_intake import LooseSchedule, judge, judge_booking
from shared import payloads
from shared.models import BookingIn

MODELS: list[type[BaseModel]] = sorted(
    {m for m in vars(payloads).values() if isinstance(m, type) and issubclass(m, BaseModel)
     and m.__module__ == payloads.__name__} | {BookingIn, LooseSchedule}, key=lambda m: m.__name__)

TIMES = st.one_of(
    st.datetimes(timezones=st.none()).map(lambda t: t.isoformat()),  # naive
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(["2030-01-01T10:00:00Z", "2030-01-01T10:00:00+25:00", "2030-02-30T10:00:00Z",
                     "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "now", "", "2030-01-01", "1e309"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80), TIMES,
                    st.text(alphabet=string.ascii_letters + "./-_", max_size=70))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                    max_leaves=20)


def shaped(model: type[BaseModel]) -> st.SearchStrategy[dict]:
    """Objects with the model's own field names (so validation gets past the shape) and hostile values."""
    names = list(model.model_fields)
    return st.dictionaries(st.sampled_from(names + ["v", "sent_at", "extra"]), JSON, max_size=len(names) + 2)


def judged(model: type[BaseModel], raw: bytes) -> BaseModel | None:
    """The model, or None after a ValidationError that says what is wrong; any other exception fails the test."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        assert exc.errors(), "a validation error names what is wrong"
        return None


def times_are_utc(value: object) -> bool:
    """Every datetime inside an accepted model is aware UTC."""
    if isinstance(value, datetime):
        return value.utcoffset() == timedelta(0)
    if isinstance(value, BaseModel):
        return all(times_are_utc(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, list | tuple):
        return all(times_are_utc(v) for v in value)
    return True


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_payload_model_accepts_or_rejects_with_a_validation_error(model, data):
    raw = data.draw(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                              shaped(model).map(lambda v: json.dumps(v).encode())))
    accepted = judged(model, raw)
    assert accepted is None or times_are_utc(accepted)


@settings(max_examples=120, deadline=None)
@given(item=st.one_of(JSON, shaped(BookingIn)))
def test_the_api_booking_parser_accepts_or_rejects_with_a_validation_error(item):
    accepted = judged(BookingsIn, json.dumps(item).encode())
    assert accepted is None or times_are_utc(accepted.root)


@settings(max_examples=120, deadline=None)
@given(start=st.datetimes(timezones=st.none()), length=st.integers(min_value=1, max_value=10**6))
def test_a_naive_time_is_refused_with_the_documented_reason(start, length):
    body = {"id": "b1", "user_id": "u1", "start_time": start.isoformat(),
            "end_time": (start + timedelta(seconds=length)).isoformat() + "Z"}
    with pytest.raises(ValidationError, match="timezone offset"):
        BookingIn.model_validate_json(json.dumps(body))


@settings(max_examples=120, deadline=None)
@given(bookings=st.lists(st.one_of(JSON, shaped(BookingIn)), max_size=5))
def test_the_recorder_judges_any_schedule_booking_by_booking(bookings):
    """Each malformed booking becomes a rejected entry with a reason; the rest are kept; nothing raises."""
    loose = LooseSchedule.model_validate({"camera_id": "cam1", "revision": 1, "bookings": bookings,
                                          "sent_at": "2030-01-01T00:00:00Z"})
    snapshot, rejected = judge(loose, 240)
    assert len(snapshot.bookings) + len(rejected) == len(bookings)
    assert all(r.reason for r in rejected)
    for raw in bookings:
        try:
            judge_booking(raw, 240)
        except ValueError as exc:
            assert str(exc)
