from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from core.settings import Settings
from web.client_address import client_address, forwarded_client

GATEWAY = Settings(trusted_proxies="127.0.0.1,::1")


def request_from(peer: str, *forwarded: str) -> object:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    return make_mocked_request("POST", "/api/auth/login", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # behind the gateway
        ("::1", "203.0.113.7", "203.0.113.7"),
        ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),
        # The gateway appends the peer it saw: what the client wrote before it is not believed.
        ("127.0.0.1", "10.9.9.9, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 127.0.0.1", "203.0.113.7"),  # a trusted hop is skipped
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7, not-an-address", "127.0.0.1"),
        ("198.51.100.2", "203.0.113.7", "198.51.100.2"),  # not the gateway: the header is a lie
    ],
)
def test_forwarded_client(peer: str, forwarded: str, expected: str) -> None:
    assert forwarded_client(peer, forwarded, GATEWAY) == expected


def test_a_peer_outside_the_trusted_proxies_is_its_own_address() -> None:
    # In tests every peer is loopback: the same peer, not configured as a proxy, is not believed.
    elsewhere = Settings(trusted_proxies="10.0.0.0/8")
    assert forwarded_client("127.0.0.1", "203.0.113.7", elsewhere) == "127.0.0.1"
    assert forwarded_client("10.1.2.3", "203.0.113.7", elsewhere) == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "203.0.113.7", Settings(trusted_proxies="")) == (
        "127.0.0.1"
    )


def test_every_forwarded_header_is_read_in_order() -> None:
    request = request_from("127.0.0.1", "203.0.113.7", "198.51.100.9")
    assert client_address(request, GATEWAY) == "198.51.100.9"  # type: ignore[arg-type]
    request = request_from("127.0.0.1", "203.0.113.7", "127.0.0.1")
    assert client_address(request, GATEWAY) == "203.0.113.7"  # type: ignore[arg-type]


def test_without_a_header_the_peer() -> None:
    assert client_address(request_from("127.0.0.1"), GATEWAY) == "127.0.0.1"  # type: ignore[arg-type]
