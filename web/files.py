"""The files service: presigned uploads and downloads against S3-compatible storage.

So far it answers only /healthz, /readyz and /metrics; its API grows with the issues that build it.
"""

from __future__ import annotations

from aiohttp import web

from core.settings import Settings
from web.health import Dependency
from web.service import service_app

DEPENDENCIES = (Dependency.MONGODB, Dependency.S3)


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, "files", DEPENDENCIES)
