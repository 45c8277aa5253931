from __future__ import annotations

import pytest

from core.security.throttle_keys import address_bucket, hashed


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same host's /64
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_address_bucket(address: str, bucket: str) -> None:
    assert address_bucket(address) == bucket


def test_hashed_keeps_parts_apart_and_hides_them() -> None:
    assert hashed("a@example.test", "1.2.3.4") != hashed("a@example.test1", ".2.3.4")
    assert "example" not in hashed("a@example.test")
