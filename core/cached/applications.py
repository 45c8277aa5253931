"""Applications as the pipeline sees them, read through a Redis cache.

An application names its chatbot (``chatbot_id``); the chatbot's document, model API key still
sealed, is embedded as ``chatbot`` in the cached config, so a turn reads one entry. (Documents
that embed ``chatbot`` themselves, without a ``chatbot_id``, are read as they are.)

The applications and chatbots services invalidate an entry whenever the application or its
chatbot changes; the TTL only bounds how long a missed invalidation can live. Each process also
keeps what it read for a moment (``LOCAL_TTL_S``): a busy AI stage asked Redis for the same
configuration hundreds of times a second, each a round trip. A change therefore reaches a
running worker within that moment of its invalidation.
"""

from __future__ import annotations

import json
import time
from typing import cast

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.clients.database import Document, find_in_workspace
from core.errors import NotFound

CACHE_TTL_S = 300
LOCAL_TTL_S = 2.0


def cache_key(application_id: str) -> str:
    return f"config:application:{application_id}"


class UnknownApplication(NotFound):
    """The record names an application that does not exist in its workspace."""


class ApplicationDirectory:
    def __init__(
        self, db: AsyncDatabase[Document], redis: Redis, local_ttl_s: float = LOCAL_TTL_S
    ) -> None:
        self._applications = db["applications"]
        self._chatbots = db["chatbots"]
        self._redis = redis
        self._local_ttl_s = local_ttl_s
        self._local: dict[str, tuple[float, bytes]] = {}

    async def _cached(self, application_id: str) -> bytes | None:
        now = time.monotonic()
        held = self._local.get(application_id)
        if held is not None and held[0] > now:
            return held[1]
        cached = cast(bytes | None, await self._redis.get(cache_key(application_id)))
        if cached is not None and self._local_ttl_s > 0:
            if len(self._local) > 10_000:
                self._local.clear()
            self._local[application_id] = (now + self._local_ttl_s, cached)
        return cached

    async def get(self, application_id: str, workspace_id: str) -> Document:
        cached = await self._cached(application_id)
        if cached is not None:
            application: Document = json.loads(cached)
        else:
            found = await self._applications.find_one({"_id": application_id})
            if found is None:
                raise UnknownApplication(f"application {application_id} does not exist")
            application = await self._with_chatbot(
                {key: value for key, value in found.items() if _jsonable(value)}
            )
            await self._redis.set(
                cache_key(application_id), json.dumps(application), ex=CACHE_TTL_S
            )
        if application.get("workspace_id") != workspace_id:
            # Same answer as a missing one: a record never learns about another tenant.
            raise UnknownApplication(f"application {application_id} does not exist")
        return application

    async def _with_chatbot(self, application: Document) -> Document:
        """``application`` with its linked chatbot embedded, read in the same workspace only."""
        chatbot_id = application.get("chatbot_id")
        if not chatbot_id:
            return application
        application.pop("chatbot", None)
        found = await find_in_workspace(
            self._chatbots, chatbot_id, str(application.get("workspace_id"))
        )
        if found is not None:
            application["chatbot"] = {k: v for k, v in found.items() if _jsonable(v)}
        return application

    async def invalidate(self, application_id: str) -> None:
        self._local.pop(application_id, None)
        await self._redis.delete(cache_key(application_id))


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
