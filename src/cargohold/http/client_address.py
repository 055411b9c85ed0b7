"""The client's address, for throttling sign-ins per address.

Behind a load balancer every connection comes from the balancer. When the TCP peer is one of
the `trusted_proxies`, the client is the right-most address in `X-Forwarded-For` that is not
itself a trusted proxy: addresses to its left were written by the client and prove nothing.
From any other peer the header is ignored, so that nobody escapes throttling by sending it.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web

from cargohold.http.context import services

Networks = Sequence[IPv4Network | IPv6Network]


def _is_trusted(address: str, trusted: Networks) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Networks) -> str:
    """The client behind `peer`, given the `X-Forwarded-For` header values in order."""
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer  # a hop a trusted proxy would not write: trust none of it
    return peer


def client_address(request: web.Request) -> str:
    trusted = services(request).settings.trusted_proxies
    peer = request.remote or ""
    if not trusted:
        return peer
    return forwarded_client(peer, request.headers.getall("X-Forwarded-For", []), trusted)
