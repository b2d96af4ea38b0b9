"""The Supabase store: local mirror + durable outbox + supabase-py client (see store.py)."""

from shared.store.cloud.errors import CloudRejected, CloudUnavailable
from shared.store.cloud.store import SupabaseStore

__all__ = ["CloudRejected", "CloudUnavailable", "SupabaseStore"]
