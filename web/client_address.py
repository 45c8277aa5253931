"""The address a request came from, for throttles: the peer, or what a trusted proxy says.

``X-Forwarded-For`` is read only when the peer is one of the configured trusted proxies
(``Settings.trusted_proxies``, the gateway's addresses); anyone else could write any address
there and get a fresh throttle bucket per request. The list is read from the right, skipping
the trusted proxies' own entries: the first address that is not one of them is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from aiohttp import web

from core.settings import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(setting: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated ``trusted_proxies`` setting."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in setting.split(",")
        if part.strip()
    )


def _is_trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


def forwarded_client(peer: str, forwarded_for: str, settings: Settings) -> str:
    """The client's address, given the TCP peer and the ``X-Forwarded-For`` header's value."""
    networks = trusted_networks(settings.trusted_proxies)
    if not _is_trusted(peer, networks):
        return peer
    for entry in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        try:
            address = str(ipaddress.ip_address(entry))
        except ValueError:
            return peer  # a malformed hop: trust nothing further left of it
        if not _is_trusted(address, networks):
            return address
    return peer


def client_address(request: web.Request, settings: Settings) -> str:
    """The address of the client behind ``request``."""
    # Every X-Forwarded-For header, in order: a proxy may add its own rather than append.
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    return forwarded_client(request.remote or "unknown", forwarded, settings)
