"""The common shape of every Switchboard web service: clients, errors, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from core.clients.cache import new_redis
from core.clients.database import Document, database, new_mongo_client
from core.clients.storage import new_minio
from core.security.secrets import SecretBox
from core.settings import Settings
from web.errors import error_middleware
from web.health import Dependency, install_health
from web.keys import MINIO, MONGO, REDIS, SERVICE_NAME, SETTINGS
from web.metrics import install_metrics, metrics_middleware

#: Largest request body any service accepts; file bytes never pass through Python.
MAX_BODY_BYTES = 1024 * 1024


def service_app(
    settings: Settings,
    name: str,
    dependencies: Sequence[Dependency],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """An aiohttp app for service ``name`` holding clients for exactly its ``dependencies``;
    ``max_body_bytes`` is for a service that takes larger bodies (platform webhooks)."""
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware], client_max_size=max_body_bytes
    )
    app[SETTINGS] = settings
    app[SERVICE_NAME] = name
    if Dependency.MONGODB in dependencies:
        app.cleanup_ctx.append(_mongo_ctx)
    if Dependency.REDIS in dependencies:
        app.cleanup_ctx.append(_redis_ctx)
    if Dependency.S3 in dependencies:
        app[MINIO] = new_minio(settings, timeout=settings.readiness_timeout)
    install_health(app, dependencies)
    install_metrics(app)
    app.on_response_prepare.append(_name_the_service)
    return app


async def _name_the_service(request: web.Request, response: web.StreamResponse) -> None:
    # Behind one gateway origin, this says which service answered: handy for routing and support.
    response.headers["X-Switchboard-Service"] = request.app[SERVICE_NAME]


async def _mongo_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = new_mongo_client(settings, timeout_ms=int(settings.readiness_timeout * 1000))
    app[MONGO] = client
    yield
    await client.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = new_redis(settings, timeout=settings.readiness_timeout)
    app[REDIS] = client
    yield
    await client.aclose()


def request_db(request: web.Request) -> AsyncDatabase[Document]:
    """The service's database, for a handler of ``request``."""
    return database(request.app[MONGO], request.app[SETTINGS])


def secret_box(request: web.Request) -> SecretBox:
    """What seals the credentials a request brings, with the settings' encryption key."""
    return SecretBox(request.app[SETTINGS].encryption_key.get_secret_value())
