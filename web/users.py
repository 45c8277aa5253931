"""The users service: accounts, workspaces, sign-in and tokens (Redis for login throttling).

So far it answers only /healthz, /readyz and /metrics; its API grows with the issues that build it.
"""

from __future__ import annotations

from aiohttp import web

from core.settings import Settings
from web.health import Dependency
from web.service import service_app

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS)


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, "users", DEPENDENCIES)
