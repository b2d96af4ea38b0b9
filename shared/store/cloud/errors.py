"""Two kinds of cloud failure, because the outbox treats them differently."""

from __future__ import annotations

from shared.store.base import StoreError


class CloudUnavailable(StoreError):
    """Network down, timeout, 5xx, 408/429, auth not accepted (yet), upload lock held: retry later, keep order."""


class CloudRejected(StoreError):
    """The cloud understood and refused (4xx on the request itself): retrying the same bytes cannot help."""


RETRYABLE_STATUS = frozenset({401, 403, 408, 409, 423, 425, 429})


def classify(status: int | None, message: str) -> StoreError:
    """No status means the request never got an answer (connection refused, reset, timeout)."""
    if status is None or status >= 500 or status in RETRYABLE_STATUS:
        return CloudUnavailable(f"HTTP {status}: {message}" if status else message)
    return CloudRejected(f"HTTP {status}: {message}")
