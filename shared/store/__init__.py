"""Pick the store: Supabase when configured, else the embedded default."""

from __future__ import annotations

from shared.settings import Settings
from shared.store.base import BookingConflict, NotFound, Store, StoreError
from shared.store.local import LocalStore

__all__ = ["BookingConflict", "LocalStore", "NotFound", "Store", "StoreError", "open_store"]


def open_store(settings: Settings, *, drain: bool = True) -> Store:
    """`drain=False` for the recorder and the status service: with Supabase, the outbox is drained (uploads
    included) by the worker and the API, never in the process whose frame loop must not stall or whose
    footprint is measured; their writes go to the same durable outbox and leave with the others'."""
    if settings.supabase_url:
        if settings.supabase_service_role_key is None:
            raise StoreError("SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not; set both, or neither "
                             "to use the embedded store")
        try:
            from shared.store.cloud import SupabaseStore  # the `supabase` extra; only needed when configured
        except ImportError as exc:
            raise StoreError(f"SUPABASE_URL is set but the supabase client is not installed ({exc}); "
                             "install with: pip install -e '.[supabase]'") from exc
        store = SupabaseStore(settings)
        if drain:
            store.start()  # drains the cloud outbox in the background (one process at a time holds the lease)
        return store
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LocalStore(settings.data_dir)
