"""Cloud reachability: a TCP connect to SUPABASE_URL's host; absent when no cloud is configured."""

from __future__ import annotations

import socket

import pytest

from services.status.reachability import cloud_endpoint, cloud_reachable, tcp_reachable
from tests.broker import free_port


@pytest.mark.parametrize(("url", "endpoint"), [
    (None, None),
    ("", None),
    ("https://abcd.supabase.co", ("abcd.supabase.co", 443)),
    ("http://10.0.0.5", ("10.0.0.5", 80)),
    ("http://127.0.0.1:54321", ("127.0.0.1", 54321)),
    ("abcd.supabase.co", ("abcd.supabase.co", 443)),
    ("https://host:notaport", None),
])
def test_cloud_endpoint_from_supabase_url(url, endpoint):
    assert cloud_endpoint(url) == endpoint


def test_reachable_when_something_listens_and_not_when_nothing_does():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert tcp_reachable("127.0.0.1", port) is True
        assert cloud_reachable(f"http://127.0.0.1:{port}") is True
    closed = free_port()
    assert tcp_reachable("127.0.0.1", closed, timeout=1) is False
    assert cloud_reachable(f"http://127.0.0.1:{closed}", timeout=1) is False
    assert cloud_reachable(None) is None
