"""What counts as this machine only (`is_loopback_host`), the one rule of the download URL
policy, serve's exposure check, the job's proxy bypass and the local Ray instance."""
from __future__ import annotations

import pytest

from graphcast_contract.urls import is_allowed_url, is_loopback_host


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    (" LocalHost ", True), ("::ffff:127.0.0.1", True),  # IPv4 loopback in an IPv6 socket
    ("0.0.0.0", False), ("::", False), ("::ffff:10.0.0.1", False), ("192.0.2.2", False),
    ("my-host.example", False), ("", False),
])
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("url, allowed", [
    ("https://mirror.example/weights", True), ("http://127.0.0.1:8000/w", True),
    ("http://[::1]:8000/w", True), ("http://localhost/w", True),
    ("http://mirror.example/w", False), ("http://0.0.0.0/w", False), ("ftp://127.0.0.1/w", False),
])
def test_plain_http_only_to_a_loopback_host(url: str, allowed: bool) -> None:
    assert is_allowed_url(url) is allowed
