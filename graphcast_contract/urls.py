"""Which addresses the project downloads from: the one policy of every downloader (weights,
open data), for base URLs and for where their redirects lead."""
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
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return parts.scheme == "http" and loopback


def refused_redirect(url: str, target: str) -> str:
    """The error line of a redirect from `url` to a `target` is_allowed_url refuses."""
    return f"{url} redirects to {target}, refused: redirects are followed only to {ALLOWED_URLS}"
