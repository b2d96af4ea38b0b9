"""Pick the store: Supabase when configured, else the embedded default."""

from __future__ import annotations

from shared.settings import Settings
from shared.store.base import BookingConflict, NotFound, Store, StoreError
from shared.store.local import LocalStore

__all__ = ["BookingConflict", "LocalStore", "NotFound", "Store", "StoreError", "open_store"]


def open_store(settings: Settings) -> Store:
    if settings.supabase_url:
        raise StoreError(
            "SUPABASE_URL is set but the Supabase store is not available in this build yet; "
            "unset SUPABASE_URL to use the embedded store"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LocalStore(settings.data_dir)
