"""Can the device reach the cloud? A TCP connect to SUPABASE_URL's host: cheap, and it is what uploads need first."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 3.0


def cloud_endpoint(url: str | None) -> tuple[str, int] | None:
    """(host, port) of SUPABASE_URL; None when no cloud is configured (the field is then omitted)."""
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (80 if parts.scheme == "http" else 443)


def tcp_reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cloud_reachable(url: str | None, timeout: float = CONNECT_TIMEOUT_S) -> bool | None:
    endpoint = cloud_endpoint(url)
    if endpoint is None:
        return None
    return tcp_reachable(*endpoint, timeout=timeout)
