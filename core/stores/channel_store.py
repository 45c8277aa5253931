"""Connected channels in MongoDB: their credentials and webhook secret sealed, never shown.

A channel document::

    {_id, workspace_id, application_id, type, status: active | disconnected, name,
     platform_id, config: {...not secret...}, credentials: <sealed JSON object>,
     webhook_secret: <sealed>, created_at, updated_at, disconnected_at}

A Telegram channel's id is random (it is part of its public webhook URL). An API channel's id is
its application's, as every API-channel record already names it: an application has at most
one. Lookups go by ``_id`` alone (the only read FerretDB serves without a scan) and check the
workspace here; another workspace's channel reads as missing.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from core.channels.base import ChannelAccount
from core.clients.database import Document, find_in_workspace
from core.errors import NotFound
from core.security.secrets import SecretBox

ACTIVE = "active"
#: How long a channel's document is reused without reading it again, and how many are kept: a
#: burst of one bot's updates or sends reads MongoDB once. A change (a disconnect, a new secret)
#: is seen within this; the pipeline refuses a disconnected channel's records meanwhile, and the
#: sender reads the channel afresh after any failed send.
CHANNEL_CACHE_TTL_S = 2.0
CHANNEL_CACHE_SIZE = 10_000
DISCONNECTED = "disconnected"


class ChannelNotFound(NotFound):
    """No such channel in the caller's workspace (or none at all: the same answer)."""


def seal_credentials(box: SecretBox, credentials: dict[str, str]) -> str:
    return box.seal(json.dumps(credentials, sort_keys=True))


def account_of(document: Document, box: SecretBox) -> ChannelAccount:
    """The adapter's view of a channel, its secrets opened (in memory only)."""
    sealed = document.get("credentials")
    credentials = json.loads(box.open(sealed)) if isinstance(sealed, str) and sealed else {}
    secret = document.get("webhook_secret")
    return ChannelAccount(
        channel_id=str(document["_id"]),
        type=str(document["type"]),
        workspace_id=str(document["workspace_id"]),
        application_id=str(document["application_id"]),
        credentials=credentials,
        webhook_secret=box.open(secret) if isinstance(secret, str) and secret else "",
        config=dict(document.get("config") or {}),
    )


class ChannelStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._channels = db["channels"]

    async def ensure_indexes(self) -> None:
        await self._channels.create_index([("workspace_id", 1), ("application_id", 1)])

    async def by_id(self, channel_id: str) -> Document | None:
        """A channel whoever's it is: for the webhook ingress and the sender, which check the
        tenant through the request's secret or the record's envelope."""
        found: Document | None = await self._channels.find_one({"_id": channel_id})
        return found

    async def get(self, workspace_id: str, channel_id: str) -> Document:
        found = await find_in_workspace(self._channels, channel_id, workspace_id)
        if found is None:
            raise ChannelNotFound(f"channel {channel_id} does not exist")
        return found

    async def of_workspace(
        self, workspace_id: str, application_id: str | None = None
    ) -> list[Document]:
        query: dict[str, Any] = {"workspace_id": workspace_id}
        if application_id is not None:
            query["application_id"] = application_id
        return [d async for d in self._channels.find(query).sort("created_at", 1)]

    async def save(self, document: Document) -> Document:
        """Insert or replace the whole channel (a reconnect of an API channel replaces it)."""
        now = time.time()
        document = {**document, "updated_at": now}
        document.setdefault("created_at", now)
        await self._channels.replace_one({"_id": document["_id"]}, document, upsert=True)
        return document

    async def update(self, workspace_id: str, channel_id: str, fields: Document) -> Document:
        found = await self.get(workspace_id, channel_id)
        changed = {**found, **fields, "updated_at": time.time()}
        await self._channels.replace_one({"_id": channel_id}, changed)
        return changed


class RecentChannels:
    """Channel documents read in the last ``ttl_s``, by id (found ones only: an id that does not
    exist is looked up each time, so made-up ids cannot fill the cache)."""

    def __init__(
        self,
        store: ChannelStore,
        *,
        ttl_s: float = CHANNEL_CACHE_TTL_S,
        size: int = CHANNEL_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._recent: OrderedDict[str, tuple[float, Document]] = OrderedDict()

    async def by_id(self, channel_id: str) -> Document | None:
        now = self._clock()
        hit = self._recent.get(channel_id)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        document = await self._store.by_id(channel_id)
        if document is None:
            self._recent.pop(channel_id, None)
            return None
        self._recent[channel_id] = (now, document)
        self._recent.move_to_end(channel_id)
        while len(self._recent) > self._size:
            self._recent.popitem(last=False)
        return document
