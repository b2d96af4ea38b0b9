"""Time is timezone-aware UTC everywhere inside; naive values are refused at the edge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone offset (e.g. 2026-11-25T18:00:00Z)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(to_utc)]
"""Pydantic field type: rejects naive timestamps, normalises aware ones to UTC."""


def isoformat_z(value: datetime) -> str:
    return to_utc(value).isoformat().replace("+00:00", "Z")
