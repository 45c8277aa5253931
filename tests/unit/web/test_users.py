from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from web.users import client_address


def request_from(peer: str, forwarded: str | None) -> object:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return make_mocked_request("POST", "/api/auth/login", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", "203.0.113.7, 10.0.0.1", "203.0.113.7"),  # behind the gateway
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("198.51.100.2", "203.0.113.7", "198.51.100.2"),  # not the gateway: the header is a lie
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(request_from(peer, forwarded)) == expected  # type: ignore[arg-type]
