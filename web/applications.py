"""The applications service: applications, API keys, and new conversations for the pipeline.

So far it answers only /healthz, /readyz and /metrics; its API grows with the issues that build it.
"""

from __future__ import annotations

from aiohttp import web

from core.settings import Settings
from web.health import Dependency
from web.service import service_app

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS, Dependency.KAFKA)


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, "applications", DEPENDENCIES)
