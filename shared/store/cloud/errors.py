"""Two kinds of cloud failure, because the outbox treats them differently, and how each Supabase service's
answers map onto them (read from the servers' source, not their documentation).

Storage (supabase/storage src/http/error-handler.ts) answers almost every error with HTTP 400 and puts the real
code in the body's `statusCode` (a read-only database is HTTP 400 + "503"); the TUS server answers with the real
status and a plain-text body, except what fails before it runs (the JWT check: Storage's JSON again). PostgREST's
HTTP status is the real one (src/PostgREST/Error.hs mapSQLtoHTTP), with the SQLSTATE in `code`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from shared.store.base import StoreError

Fault = Literal["auth", "read_only", "schema"]
FAULT_HINTS: dict[str, str] = {
    "auth": "the service-role key was not accepted: check SUPABASE_SERVICE_ROLE_KEY (self-hosted: that the gateway "
            "and the services share the project's JWT secret)",
    "read_only": "the project's database is in read-only mode (Supabase does this to a database over its disk "
                 "size): free space or raise the plan; writes resume by themselves",
    "schema": "the project lacks EZREC's tables or columns: apply supabase/migrations",
}


class CloudUnavailable(StoreError):
    """Network down, timeout, 5xx, 408/429, a lock or conflict on the server: retry later, keep order.

    `fault` names a condition an operator must fix (the key, a read-only database, a missing schema): the write
    is still retried with backoff (nothing is lost once it is fixed), and the condition is reported as an alert."""

    def __init__(self, message: str, *, fault: Fault | None = None, service: str | None = None) -> None:
        super().__init__(message)
        self.fault, self.service = fault, service


class CloudRejected(StoreError):
    """The cloud understood and refused (4xx on the request itself): retrying the same bytes cannot help.
    `reason`: too_large, mime_type, conflict, location or refused."""

    def __init__(self, message: str, *, reason: str = "refused") -> None:
        super().__init__(message)
        self.reason = reason


STORAGE_RETRYABLE = frozenset({408, 409, 423, 429, 544})
"""Storage codes of temporary faults (src/internal/errors/codes.ts): a transaction conflict (409), a locked
resource (423), too many connections (429), a database timeout (544); every 5xx too."""
STORAGE_REFUSED_REASONS = {413: "too_large", 415: "mime_type"}


def _fault(fault: Fault, service: str, message: str) -> CloudUnavailable:
    return CloudUnavailable(f"{message} ({FAULT_HINTS[fault]})", fault=fault, service=service)


def storage_code(http_status: int | None, body: Any) -> tuple[int | None, str | None, str | None]:
    """(real status, error name, message) of a Storage answer: the body's statusCode when it has one (Storage's
    JSON), else the HTTP status (the TUS server's plain-text answers, a proxy's page)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            return http_status, None, text.strip()[:300] or None
    if isinstance(body, dict) and "statusCode" in body:
        try:
            status = int(body["statusCode"])
        except (TypeError, ValueError):
            status = http_status
        return status, body.get("code") or body.get("error"), body.get("message")
    if isinstance(body, dict):
        return http_status, body.get("code") or body.get("error"), body.get("message")
    return http_status, None, None


def classify_storage(status: int | str | None, what: str, *, code: str | None = None,
                     http_status: int | None = None, detail: str | None = None) -> StoreError:
    """A Storage (or TUS) failure by its real code. No status: the request got no answer."""
    if status is None:
        return CloudUnavailable(what)
    try:
        real = int(status)
    except ValueError:
        real = http_status or 500
    answered = f"Storage answered {real}" + (f" {code}" if code else "") + \
        (f" (HTTP {http_status})" if http_status is not None and http_status != real else "")
    message = f"{what}: {answered}" + (f": {detail}" if detail else "")
    if real in (401, 403):
        return _fault("auth", "storage", message)
    if code == "DatabaseReadOnly":
        return _fault("read_only", "storage", message)
    if real >= 500 or real in STORAGE_RETRYABLE:
        return CloudUnavailable(message)
    return CloudRejected(message, reason=STORAGE_REFUSED_REASONS.get(real, "refused"))


def classify_storage_answer(http_status: int, body: bytes | str, what: str) -> StoreError:
    real, code, detail = storage_code(http_status, body)
    return classify_storage(real, what, code=code, http_status=http_status, detail=detail)


SCHEMA_CODES = frozenset({"PGRST202", "PGRST204", "PGRST205", "42P01", "42703", "42883"})
"""PostgREST's "not in the schema cache" (function, column, table) and PostgreSQL's undefined table/column/function:
the project lacks EZREC's migrations, which an operator applies; refusing would hold every booking meanwhile."""


def classify_postgrest(status: int | None, code: str | None, what: str, *, detail: str | None = None) -> StoreError:
    """A PostgREST failure as the server means it (src/PostgREST/Error.hs mapSQLtoHTTP): the HTTP status is the real
    one, the SQLSTATE (or PGRSTxxx) is in `code`. No status: the request got no answer."""
    if status is None:
        return CloudUnavailable(what)
    message = f"{what}: PostgREST answered {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
    if status in (401, 403):
        return _fault("auth", "rest", message)  # JWT (PGRST301-303), 42501 privileges, 28*/0L*/0P* roles
    if code == "25006":
        return _fault("read_only", "rest", message)  # 405: read_only_sql_transaction
    if code in SCHEMA_CODES:
        return _fault("schema", "rest", message)
    if status >= 500 or status in (408, 429):
        return CloudUnavailable(message)  # 08*/53*/57P01 503, 40*/57*/25* 500, pool timeout 504
    if status == 409:
        return CloudRejected(message, reason="conflict")  # 23505 unique, 23503 foreign key: permanent
    return CloudRejected(message)
