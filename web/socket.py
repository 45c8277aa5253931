"""The socket service: realtime push to the widget and the operators' inbox (socket.io over Redis).

So far it answers only /healthz, /readyz and /metrics; its API grows with the issues that build it.
"""

from __future__ import annotations

from aiohttp import web

from core.settings import Settings
from web.health import Dependency
from web.service import service_app

DEPENDENCIES = (Dependency.REDIS, Dependency.MONGODB, Dependency.KAFKA)


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, "socket", DEPENDENCIES)
