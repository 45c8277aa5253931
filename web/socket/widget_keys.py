"""The application behind a public widget key, as the socket service checks it on every connect.

A key never moves to another application, so which application it names is kept for a day in
Redis and for a moment in the process; whether that application still exists is asked of the
``ApplicationDirectory`` each time, which the applications service invalidates on a change, so a
deleted application's key stops working at once. Unknown keys are remembered briefly too: a
page embedding a wrong key reconnects in a loop, and each try would scan the applications.
"""

from __future__ import annotations

import json
import time
from typing import cast

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.cached.applications import ApplicationDirectory, UnknownApplication
from core.clients.database import Document
from core.stores.application_store import WIDGET_KEY_PREFIX

KEY_TTL_S = 24 * 3600
LOCAL_TTL_S = 30.0
UNKNOWN_TTL_S = 5.0
MAX_LOCAL_KEYS = 10_000


def cache_key(widget_key: str) -> str:
    return f"config:widget_key:{widget_key}"


class WidgetKeys:
    def __init__(
        self, db: AsyncDatabase[Document], redis: Redis, applications: ApplicationDirectory
    ) -> None:
        self._applications_collection = db["applications"]
        self._redis = redis
        self._applications = applications
        self._local: dict[str, tuple[float, tuple[str, str] | None]] = {}

    async def application(self, widget_key: str) -> Document | None:
        """The application (with its chatbot) that ``widget_key`` belongs to, or None."""
        if not widget_key.startswith(WIDGET_KEY_PREFIX) or len(widget_key) > 128:
            return None
        owner = await self._owner(widget_key)
        if owner is None:
            return None
        application_id, workspace_id = owner
        try:
            return await self._applications.get(application_id, workspace_id)
        except UnknownApplication:
            return None

    async def _owner(self, widget_key: str) -> tuple[str, str] | None:
        now = time.monotonic()
        held = self._local.get(widget_key)
        if held is not None and held[0] > now:
            return held[1]
        owner = await self._read(widget_key)
        if len(self._local) >= MAX_LOCAL_KEYS:
            self._local.clear()
        self._local[widget_key] = (now + (LOCAL_TTL_S if owner else UNKNOWN_TTL_S), owner)
        return owner

    async def _read(self, widget_key: str) -> tuple[str, str] | None:
        cached = cast(bytes | None, await self._redis.get(cache_key(widget_key)))
        if cached is not None:
            application_id, workspace_id = json.loads(cached)
            return str(application_id), str(workspace_id)
        found = await self._applications_collection.find_one(
            {"widget_key": widget_key}, projection={"_id": 1, "workspace_id": 1}
        )
        if found is None:
            return None
        owner = (str(found["_id"]), str(found["workspace_id"]))
        await self._redis.set(cache_key(widget_key), json.dumps(owner), ex=KEY_TTL_S)
        return owner
