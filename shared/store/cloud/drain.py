"""Applies the outbox to the cloud: in order per key, with exponential backoff while the cloud is away.

Every process that opens the Supabase store runs one of these; the outbox lease lets only one of them
drain at a time, so the order in the file is the order the cloud sees. A refused operation stops its key
(the later ones wait in the outbox until it is replayed); the other keys go on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from shared.backoff import exponential_s
from shared.store.cloud.errors import CloudRejected, CloudUnavailable
from shared.store.cloud.outbox import CloudOp, CloudOutbox, holds_after_refusal

log = logging.getLogger(__name__)


class Drainer:
    def __init__(self, outbox: CloudOutbox, apply: Callable[[CloudOp], None], *, retry_min_s: float = 1.0,
                 retry_max_s: float = 300.0, idle_poll_s: float = 1.0, lease_ttl_s: float = 180.0) -> None:
        self.outbox, self.apply = outbox, apply
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.idle_poll_s, self.lease_ttl_s = idle_poll_s, lease_ttl_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.failures = 0  # consecutive passes that hit an unavailable cloud
        self.offline_until = 0.0
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def cloud_reachable(self) -> bool:
        """False while backing off after the cloud was unreachable (readers then skip the cloud at once)."""
        return time.monotonic() >= self.offline_until

    def backoff_s(self) -> float:
        if self.failures == 0:
            return 0.0
        return exponential_s(self.failures - 1, self.retry_min_s, self.retry_max_s, jitter=(0.8, 1.0))

    def note_unavailable(self) -> None:
        self.failures += 1
        self.offline_until = time.monotonic() + self.backoff_s()

    def note_reachable(self) -> None:
        self.failures, self.offline_until = 0, 0.0

    def renew(self) -> None:
        """Called between TUS chunks: a long upload keeps the lease."""
        self.outbox.acquire_lease(self.holder, self.lease_ttl_s)

    def drain_once(self) -> int:
        """One pass; returns how many operations were applied. Stops at the first unavailable answer."""
        if not self.outbox.has_runnable():  # a read: idle processes don't write (fsync) the lease every second
            return 0
        if not self.outbox.acquire_lease(self.holder, self.lease_ttl_s):
            return 0
        applied = 0
        blocked: set[str] = set()
        for op in self.outbox.runnable():  # without the keys held behind a refusal recorded in the file
            if op.key in blocked:
                continue
            if not self.outbox.acquire_lease(self.holder, self.lease_ttl_s):
                break
            try:
                self.apply(op)
            except CloudUnavailable as exc:
                self.outbox.attempt_failed(op.id, str(exc))
                self.note_unavailable()
                log.warning("cloud unavailable (%s); %d operation(s) waiting, retry in %.0fs", exc,
                            self.outbox.pending_count(), self.offline_until - time.monotonic())
                return applied
            except CloudRejected as exc:  # its key's later operations must not overtake it: hold them
                self.outbox.reject(op.id, str(exc))
                if holds_after_refusal(op.key):
                    blocked.add(op.key)
                    log.error("cloud refused %s %s (kept in the outbox as failed; the later operations of %s"
                              " wait until it is replayed): %s", op.kind, op.key, op.key, exc)
                else:
                    log.error("cloud refused %s %s (kept in the outbox as failed): %s", op.kind, op.key, exc)
                continue
            except Exception as exc:  # a bug or a local problem: keep the op, keep its key's order
                self.outbox.attempt_failed(op.id, f"{type(exc).__name__}: {exc}")
                blocked.add(op.key)
                log.exception("applying %s %s failed; will retry", op.kind, op.key)
                continue
            self.outbox.done(op.id)
            self.note_reachable()
            applied += 1
        return applied

    # ---- background thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cloud-drain", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.outbox.release_lease(self.holder)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:
                log.exception("cloud drain pass failed")
                self.note_unavailable()
            wait = max(self.idle_poll_s, self.offline_until - time.monotonic())
            self.wake.wait(wait)
            self.wake.clear()
            if not self.cloud_reachable and not self._stop.is_set():
                # Woken by a new operation while backing off: respect the backoff, don't hammer the cloud.
                self._stop.wait(max(0.0, self.offline_until - time.monotonic()))
