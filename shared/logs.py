"""Logging set-up that keeps secrets out of every log line (standard library only: `ezrec health` imports it)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

MASK = "***"


def broker_passwords_in_env() -> list[str]:
    """`MQTT_PASSWORD_<USER>` values a process may have been handed (compose blanks the other users', a local .env
    loaded into the environment may not): redacted like the process's own secrets."""
    return [value for key, value in os.environ.items() if key.upper().startswith("MQTT_PASSWORD") and value]


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class RedactSecrets(logging.Filter):
    """Redacts the message and, for a record with an exception, the traceback too (a handler's formatter prints
    `exc_text` when it is set, so the unredacted traceback is never formatted)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._redact = Redactor(secrets)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._redact.secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not getattr(record, "_ezrec_redacted_exc", False):
            record.exc_text = self._redact(self._formatter.formatException(record.exc_info))
            record._ezrec_redacted_exc = True
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


def setup_logging(service: str, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

