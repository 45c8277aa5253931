"""Integration tests run against the real local services (tests/live_services.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _services(local_services: None) -> None:
    """Every test here needs the services up."""
