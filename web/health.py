"""Liveness (/healthz) and readiness (/readyz) of a web service.

/readyz really talks to each backing service the web service needs, concurrently and with a
timeout, and answers 503 naming every one that is down; the service itself keeps running.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from core.clients.kafka import cluster_reachable
from web.errors import error_response
from web.keys import MINIO, MONGO, REDIS, SERVICE_NAME, SETTINGS

log = logging.getLogger(__name__)


class Dependency(enum.StrEnum):
    KAFKA = "kafka"
    MONGODB = "mongodb"
    REDIS = "redis"
    S3 = "s3"


_DEPENDENCIES = web.AppKey("dependencies", tuple)


async def _probe_mongodb(app: web.Application) -> None:
    await app[MONGO].admin.command("ping")


async def _probe_redis(app: web.Application) -> None:
    await app[REDIS].ping()


async def _probe_s3(app: web.Application) -> None:
    bucket = app[SETTINGS].s3_bucket
    if not await asyncio.to_thread(app[MINIO].bucket_exists, bucket):
        raise LookupError(f"bucket {bucket!r} does not exist")


async def _probe_kafka(app: web.Application) -> None:
    settings = app[SETTINGS]
    await cluster_reachable(settings, timeout=settings.readiness_timeout)


PROBES: dict[Dependency, Callable[[web.Application], Awaitable[None]]] = {
    Dependency.KAFKA: _probe_kafka,
    Dependency.MONGODB: _probe_mongodb,
    Dependency.REDIS: _probe_redis,
    Dependency.S3: _probe_s3,
}


def install_health(app: web.Application, dependencies: Sequence[Dependency]) -> None:
    app[_DEPENDENCIES] = tuple(dependencies)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[SERVICE_NAME]})


async def _check(app: web.Application, dependency: Dependency) -> str | None:
    """None when the dependency answered, else a short reason."""
    timeout = app[SETTINGS].readiness_timeout
    try:
        await asyncio.wait_for(PROBES[dependency](app), timeout=timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except Exception as error:
        log.info("readiness: %s is down: %s", dependency, error)
        return f"{type(error).__name__}: {error}"[:300]
    return None


async def _readyz(request: web.Request) -> web.Response:
    app = request.app
    dependencies: tuple[Dependency, ...] = app[_DEPENDENCIES]
    results = await asyncio.gather(*(_check(app, dep) for dep in dependencies))
    checks = {
        str(dep): ("ok" if reason is None else f"down: {reason}")
        for dep, reason in zip(dependencies, results, strict=True)
    }
    down = [str(dep) for dep, reason in zip(dependencies, results, strict=True) if reason]
    service = app[SERVICE_NAME]
    if down:
        return error_response(
            503,
            "not_ready",
            f"{service} is not ready: {', '.join(down)} unavailable",
            details={"down": down},
            checks=checks,
        )
    return web.json_response({"status": "ready", "service": service, "checks": checks})
