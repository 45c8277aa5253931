"""The application behind a public widget key, as the socket service checks it on every connect
and every message.

A key that has not the exact form of a widget key is refused before any lookup. Which
application a key names is kept for a day in Redis and for a while in a bounded LRU of the
process; the application itself is asked of the ``ApplicationDirectory`` each time, which the
applications service invalidates on a change, and the key must still be its current one: a
deleted application's key, and a key replaced by a new one, stop working at once.

Unknown keys are remembered too, in Redis for a short time (every instance shares the miss) and
in a bounded cache of their own in the process: a page embedding a wrong key reconnects in a
loop, and random keys must neither reach MongoDB again nor push known keys out of the LRU.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Generic, TypeVar, cast

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.cached.applications import ApplicationDirectory, UnknownApplication
from core.clients.database import Document
from core.stores.application_store import WIDGET_KEY

KEY_TTL_S = 24 * 3600
LOCAL_TTL_S = 30.0
#: How long a key that names nothing is remembered, in Redis and in the process.
UNKNOWN_TTL_S = 30
MAX_LOCAL_KEYS = 10_000
MAX_UNKNOWN_KEYS = 10_000
#: What Redis holds for a key that names nothing.
UNKNOWN = b"null"

Owner = tuple[str, str]  # application id, workspace id
V = TypeVar("V")


def cache_key(widget_key: str) -> str:
    return f"config:widget_key:{widget_key}"


class ExpiringLru(Generic[V]):
    """At most ``size`` entries, each until its deadline; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, now: float) -> V | None:
        held = self._entries.get(key)
        if held is None:
            return None
        if held[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return held[1]

    def put(self, key: str, value: V, until: float) -> None:
        self._entries[key] = (until, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class WidgetKeys:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        redis: Redis,
        applications: ApplicationDirectory,
        *,
        max_known: int = MAX_LOCAL_KEYS,
        max_unknown: int = MAX_UNKNOWN_KEYS,
    ) -> None:
        self._applications_collection = db["applications"]
        self._redis = redis
        self._applications = applications
        self.known: ExpiringLru[Owner] = ExpiringLru(max_known)
        self.unknown: ExpiringLru[bool] = ExpiringLru(max_unknown)

    async def application(self, widget_key: str) -> Document | None:
        """The application (with its chatbot) whose current widget key is ``widget_key``."""
        if not WIDGET_KEY.fullmatch(widget_key):
            return None
        owner = await self._owner(widget_key)
        if owner is None:
            return None
        application_id, workspace_id = owner
        try:
            application = await self._applications.get(application_id, workspace_id)
        except UnknownApplication:
            application = None
        if application is None or application.get("widget_key") != widget_key:
            await self._forget(widget_key)  # deleted, or the key was replaced: for good
            return None
        return application

    async def _owner(self, widget_key: str) -> Owner | None:
        now = time.monotonic()
        owner = self.known.get(widget_key, now)
        if owner is not None:
            return owner
        if self.unknown.get(widget_key, now):
            return None
        owner = await self._read(widget_key)
        if owner is None:
            self.unknown.put(widget_key, True, now + UNKNOWN_TTL_S)
        else:
            self.known.put(widget_key, owner, now + LOCAL_TTL_S)
        return owner

    async def _read(self, widget_key: str) -> Owner | None:
        cached = cast(bytes | None, await self._redis.get(cache_key(widget_key)))
        if cached == UNKNOWN:
            return None
        if cached is not None:
            application_id, workspace_id = json.loads(cached)
            return str(application_id), str(workspace_id)
        found = await self._applications_collection.find_one(
            {"widget_key": widget_key}, projection={"_id": 1, "workspace_id": 1}
        )
        if found is None:
            await self._redis.set(cache_key(widget_key), UNKNOWN, ex=UNKNOWN_TTL_S)
            return None
        owner = (str(found["_id"]), str(found["workspace_id"]))
        await self._redis.set(cache_key(widget_key), json.dumps(owner), ex=KEY_TTL_S)
        return owner

    async def _forget(self, widget_key: str) -> None:
        self.known.pop(widget_key)
        self.unknown.put(widget_key, True, time.monotonic() + UNKNOWN_TTL_S)
        await self._redis.set(cache_key(widget_key), UNKNOWN, ex=UNKNOWN_TTL_S)
