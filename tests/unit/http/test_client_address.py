"""Which address a request comes from, behind trusted load balancers or not."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from cargohold.http.client_address import forwarded_client

BALANCERS = (ip_network("10.0.0.0/24"), ip_network("fd00::/64"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # Not from a balancer: the header is the client's own word, and ignored.
        ("192.0.2.9", ["198.51.100.7"], "192.0.2.9"),
        ("192.0.2.9", [], "192.0.2.9"),
        # From a balancer: the address it appended.
        ("10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        # Addresses left of the balancer's entry were sent by the client: not believed.
        ("10.0.0.5", ["1.2.3.4, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", ["1.2.3.4", "198.51.100.7"], "198.51.100.7"),
        # Two balancers in a row: the first address neither of them is.
        ("10.0.0.5", ["198.51.100.7, 10.0.0.6"], "198.51.100.7"),
        ("fd00::1", ["2001:db8::7, fd00::2"], "2001:db8::7"),
        ("10.0.0.5", ["2001:DB8:0::7"], "2001:db8::7"),
        # Nothing but balancers, no header, or garbage where an address should be: the peer.
        ("10.0.0.5", ["10.0.0.6"], "10.0.0.5"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["unknown"], "10.0.0.5"),
        ("10.0.0.5", ["198.51.100.7, not-an-address"], "10.0.0.5"),
    ],
)
def test_forwarded_client(peer: str, forwarded_for: list[str], client: str) -> None:
    assert forwarded_client(peer, forwarded_for, BALANCERS) == client


def test_nothing_is_trusted_without_balancers() -> None:
    assert forwarded_client("10.0.0.5", ["198.51.100.7"], ()) == "10.0.0.5"
