"""Time is timezone-aware UTC everywhere inside; naive values are refused at the edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone offset (e.g. 2026-11-25T18:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is valid ISO 8601 but before year 1 in UTC: a ValueError,
        raise ValueError("timestamp out of range once converted to UTC") from None  # so pydantic reports it



UtcDatetime = Annotated[AwareDatetime, AfterValidator(to_utc)]
"""Pydantic field type: rejects naive timestamps, normalises aware ones to UTC."""


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_ISO_WITH_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})", re.ASCII)


def _iso_text(value: object) -> object:
    """Text from a client: ISO 8601 with an offset, in [EARLIEST, LATEST). pydantic alone would also take a bare
    number as unix time and any year up to 9999. A datetime made in code is already typed: it passes as it is."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_WITH_OFFSET.fullmatch(value):
        raise PydanticCustomError(
            "datetime_iso8601", "must be an ISO 8601 date and time with a timezone offset, e.g. "
            "2026-11-25T18:00:00Z or 2026-11-25T19:00:00+01:00")
    parsed = datetime.fromisoformat(value)
    if not EARLIEST <= parsed < LATEST:
        raise PydanticCustomError("datetime_window", "must be from 2000-01-01 and before 2100-01-01 (UTC)")
    return parsed


StrictUtcDatetime = Annotated[UtcDatetime, BeforeValidator(_iso_text)]
"""For what clients send (API bodies and query parameters): only ISO 8601 text with an offset, within a sane
window; normalised to UTC like UtcDatetime."""


def isoformat_z(value: datetime) -> str:
    return to_utc(value).isoformat().replace("+00:00", "Z")
