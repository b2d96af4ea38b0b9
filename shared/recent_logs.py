"""The ring of recent warnings and errors each service publishes for the operator (see shared/runtime.py)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from shared.atomic import write_text_atomic
from shared.logs import Redactor
from shared.payloads import LOG_MESSAGE_LIMIT, LOG_RECORDS_KEPT, LogRecordOut


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


class RecentLogs(logging.Handler):
    """The last LOG_RECORDS_KEPT records of WARNING and above, redacted, for the operator's dashboard.

    Kept in `path` (written at most every `save_every_s`, and by `save()` at shutdown) so a restarted service
    still shows what came before it. `on_record` is called (without the lock) after each new record: the
    runtime publishes the list from there, never from inside a logging call.
    """

    def __init__(self, secrets: Iterable[str], path: Path | None = None, *, save_every_s: float = 10.0,
                 on_record: Callable[[], None] | None = None) -> None:
        super().__init__(logging.WARNING)
        self._redact = Redactor(secrets)
        self._records: deque[LogRecordOut] = deque(maxlen=LOG_RECORDS_KEPT)
        self._lock_records = threading.Lock()
        self.path = path
        self.save_every_s = save_every_s
        self.on_record = on_record
        self.version = 0  # moves with every record: publishers compare it
        self._saved_version = 0
        self._saved_at = 0.0
        self.reload()

    def reload(self) -> None:
        """The records kept in `path` by the previous run, before any this run has logged already."""
        if self.path is None:
            return
        try:
            items = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(items, list):
            return
        kept: list[LogRecordOut] = []
        for item in items[-LOG_RECORDS_KEPT:]:
            try:
                kept.append(LogRecordOut.model_validate(item))
            except ValidationError:
                continue  # a file from an older version, or damaged: what validates is kept
        with self._lock_records:
            ours = list(self._records)
            self._records.clear()
            self._records.extend([*kept, *ours])
            self.version += 1

    def describe(self, record: logging.LogRecord) -> str:
        """The message, plus the exception's type and message (not the traceback), redacted and capped."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {exc})"
        return _clip(self._redact(text), LOG_MESSAGE_LIMIT)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname if record.levelname in ("WARNING", "ERROR", "CRITICAL") else \
                ("CRITICAL" if record.levelno >= logging.CRITICAL else
                 "ERROR" if record.levelno >= logging.ERROR else "WARNING")
            item = LogRecordOut(at=datetime.fromtimestamp(record.created, UTC), level=level,
                                logger=_clip(self._redact(record.name), 100), message=self.describe(record),
                                pid=record.process)
            with self._lock_records:
                self._records.append(item)
                self.version += 1
        except Exception:  # a logging handler must never raise into the code that logged
            self.handleError(record)
            return
        if self.on_record is not None:
            self.on_record()

    def records(self) -> list[LogRecordOut]:
        with self._lock_records:
            return list(self._records)

    def save(self, *, force: bool = False) -> None:
        """Written atomically, at most every save_every_s unless forced (an SD card must not be rewritten per line)."""
        if self.path is None:
            return
        now = time.time()
        with self._lock_records:
            if self.version == self._saved_version or (not force and now - self._saved_at < self.save_every_s):
                return
            version, body = self.version, json.dumps([r.model_dump(mode="json") for r in self._records])
        try:
            write_text_atomic(self.path, body)
        except OSError as exc:
            sys.stderr.write(f"could not keep recent log records in {self.path}: {exc}\n")
            return
        with self._lock_records:
            self._saved_version, self._saved_at = version, now
