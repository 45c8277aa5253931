"""The widget-key caches' pure parts: the key's form, and the bounded LRU that keeps known
keys apart from unknown ones."""

from __future__ import annotations

import pytest

from core.stores.application_store import WIDGET_KEY, new_widget_key
from web.socket.widget_keys import ExpiringLru


def test_every_new_widget_key_has_the_exact_form() -> None:
    for _ in range(1000):
        assert WIDGET_KEY.fullmatch(new_widget_key())


@pytest.mark.parametrize(
    "key",
    ["", "pk_", "pk_" + "a" * 31, "pk_" + "a" * 33, "sbk_" + "a" * 32, "pk_" + "a" * 31 + "=",
     "pk_" + "a" * 31 + "\n", " pk_" + "a" * 32, "pk_" + "\u0430" * 32],
)  # fmt: skip
def test_anything_else_is_not_a_widget_key(key: str) -> None:
    assert WIDGET_KEY.fullmatch(key) is None


def test_the_least_recently_used_entry_goes_first() -> None:
    lru: ExpiringLru[int] = ExpiringLru(2)
    lru.put("a", 1, until=10.0)
    lru.put("b", 2, until=10.0)
    assert lru.get("a", now=1.0) == 1  # now "b" is the least recently used
    lru.put("c", 3, until=10.0)
    assert "b" not in lru
    assert (lru.get("a", now=1.0), lru.get("c", now=1.0), len(lru)) == (1, 3, 2)


def test_an_entry_lapses_at_its_deadline() -> None:
    lru: ExpiringLru[int] = ExpiringLru(2)
    lru.put("a", 1, until=10.0)
    assert lru.get("a", now=9.9) == 1
    assert lru.get("a", now=10.0) is None
    assert "a" not in lru
