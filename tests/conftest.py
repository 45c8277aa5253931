"""Shared fixtures: the settings every test uses are the local stack's defaults."""

from __future__ import annotations

import pytest

from core.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()
