"""Which daily token budget an application has: its override, read defensively."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from core.stores.token_budget import application_limit, day_of, used_key

SETTINGS = Settings(application_tokens_per_day=1_000, workspace_tokens_per_day=5_000)


@pytest.mark.parametrize(
    ("application", "limit"),
    [
        ({}, 1_000),
        ({"budget": {"tokens_per_day": 200}}, 200),
        ({"budget": {"tokens_per_day": 0}}, 0),
        ({"budget": {"tokens_per_day": 3_000}}, 3_000),  # above the default: it replaces it
        ({"budget": {"tokens_per_day": 9_000}}, 5_000),  # never above the workspace's
        ({"budget": {"tokens_per_day": -1}}, 1_000),
        ({"budget": {"tokens_per_day": "200"}}, 1_000),
        ({"budget": {"tokens_per_day": True}}, 1_000),
        ({"budget": {"tokens_per_day": 2.5}}, 1_000),
        ({"budget": {"tokens_per_day": None}}, 1_000),
        ({"budget": "lots"}, 1_000),
        ({"budget": None}, 1_000),
    ],
)
def test_an_application_override_is_read_defensively(
    application: dict[str, Any], limit: int
) -> None:
    assert application_limit(application, SETTINGS) == limit


def test_the_default_never_exceeds_the_workspace_budget() -> None:
    small = Settings(application_tokens_per_day=9_000, workspace_tokens_per_day=5_000)
    assert application_limit({}, small) == 5_000


def test_counters_are_per_utc_day() -> None:
    assert day_of(0) == "19700101"
    assert day_of(86_399) == "19700101"
    assert day_of(86_400) == "19700102"
    assert used_key("workspace", "ws_1", "19700101") != used_key("application", "ws_1", "19700101")
