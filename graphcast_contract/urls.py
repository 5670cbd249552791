"""Which addresses the project downloads from: the one policy of every downloader (weights,
open data), for base URLs and for where their redirects lead; and the one rule for what is
this machine only (`is_loopback_host`: the service's exposure check, the job's proxy bypass,
the local Ray instance)."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# the policy in words, for error messages
ALLOWED_URLS = "an https:// address (plain http:// only to a loopback host)"


def is_allowed_url(url: str) -> bool:
    """https, or plain http to a loopback host (tests, a mirror on this machine): what is
    downloaded is run as code-like model weights or fed to the model as its initial state,
    so no one on the path may swap it."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


def is_loopback_host(host: str) -> bool:
    """Whether `host` (an address, `[::1]`, or a name) is this machine only: `localhost` or
    a loopback address (127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6, `::ffff:127.0.0.1`,
    as an IPv6 socket bound to IPv4 loopback shows it). Any other name may resolve to any
    interface."""
    host = host.strip().lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def refused_redirect(url: str, target: str) -> str:
    """The error line of a redirect from `url` to a `target` is_allowed_url refuses."""
    return f"{url} redirects to {target}, refused: redirects are followed only to {ALLOWED_URLS}"
