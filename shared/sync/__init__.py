"""Keeping the device and the cloud in step beyond the outbox: bookings made in Supabase, users' media."""

from shared.sync.cloud_sync import CloudSync, start_cloud_sync

__all__ = ["CloudSync", "start_cloud_sync"]
