"""Shared fixtures: the settings every test uses are the local stack's defaults."""

from __future__ import annotations

import pytest

from core.settings import Settings
from infra.secrets_file import startup_settings

#: The real local services, for the tests that ask for them (integration, security).
pytest_plugins = ("tests.live_services",)


@pytest.fixture(scope="session")
def settings() -> Settings:
    # As every switchboard command starts: the local stack's generated secrets, made if missing.
    return startup_settings(Settings())
