"""Applications as the pipeline sees them, read through a Redis cache.

The applications service invalidates an entry whenever the application changes; the TTL only
bounds how long a missed invalidation can live.
"""

from __future__ import annotations

import json

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.database import Document
from core.errors import NotFound

CACHE_TTL_S = 300


def cache_key(application_id: str) -> str:
    return f"config:application:{application_id}"


class UnknownApplication(NotFound):
    """The record names an application that does not exist in its workspace."""


class ApplicationDirectory:
    def __init__(self, db: AsyncDatabase[Document], redis: Redis) -> None:
        self._applications = db["applications"]
        self._redis = redis

    async def get(self, application_id: str, workspace_id: str) -> Document:
        cached = await self._redis.get(cache_key(application_id))
        if cached is not None:
            application: Document = json.loads(cached)
        else:
            found = await self._applications.find_one({"_id": application_id})
            if found is None:
                raise UnknownApplication(f"application {application_id} does not exist")
            application = {key: value for key, value in found.items() if _jsonable(value)}
            await self._redis.set(
                cache_key(application_id), json.dumps(application), ex=CACHE_TTL_S
            )
        if application.get("workspace_id") != workspace_id:
            # Same answer as a missing one: a record never learns about another tenant.
            raise UnknownApplication(f"application {application_id} does not exist")
        return application

    async def invalidate(self, application_id: str) -> None:
        await self._redis.delete(cache_key(application_id))


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
