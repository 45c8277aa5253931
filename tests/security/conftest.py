"""What Switchboard defends against, one module per finding, each probe written as an attacker
would try it. They run against the real local services (tests/live_services.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _services(local_services: None) -> None:
    """Every probe here needs the services up."""
