"""Who can reach a server: loopback by default; anything wider needs an explicit flag and authentication (item 1)."""
from __future__ import annotations

import ipaddress

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, share: bool = False, authenticated: bool, how_to_authenticate: str) -> None:
    """Refuse to serve beyond this machine without authentication.

    Raises:
        ValueError: ``host`` is not a loopback address (or ``share`` is on) and no authentication is configured.
    """
    if (share or not is_loopback(host)) and not authenticated:
        where = "a public share link" if share else f"--host {host}"
        raise ValueError(f"{where} exposes the model beyond this machine; set {how_to_authenticate} as well, "
                         "or keep the default --host 127.0.0.1")
