"""Serialized list responses, reused while the store reports no change (GET /bookings at 200 requests/s).

Listing 200 bookings costs milliseconds of row parsing and model building; the store's change token
(SQLite data_version + the connection's own writes) costs microseconds. The token is read on the event
loop's own connection; only a miss goes to the thread pool to build. The data is read after the token,
so a commit in between changes the next token: an entry can be fresher than its token, never staler.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from fastapi.concurrency import run_in_threadpool

from shared.store import Store

MAX_ENTRIES = 64


class ReadCache:
    def __init__(self, store: Store, max_entries: int = MAX_ENTRIES) -> None:
        self.store = store
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[object, bytes]] = {}

    async def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """Call from the event loop only (the token belongs to that thread's connection)."""
        token = self.store.change_token()
        if token is None:
            return await run_in_threadpool(build)
        hit = self._entries.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        data = await run_in_threadpool(build)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (token, data)
        return data
