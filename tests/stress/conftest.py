"""Stress tests use the same real local services as the integration tests."""

from tests.integration.conftest import local_services

__all__ = ["local_services"]
