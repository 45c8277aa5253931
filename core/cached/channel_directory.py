"""Connected channels as the pipeline sees them, read through a Redis cache.

A record says which channel it came in on (``channel``, ``channel_id``); before anything is
stored, the pipeline makes sure that channel is one of the record's own workspace and
application, of the record's type, and connected. Only the fields that check needs are read and
cached: a channel's credentials and webhook secret never leave MongoDB. The bots service
invalidates an entry whenever a channel is connected, changed or disconnected; the TTL only
bounds how long a missed invalidation can live.
"""

from __future__ import annotations

import json
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.cached.applications import CACHE_TTL_S
from core.clients.database import Document
from core.errors import NotFound, ValidationFailed
from streams.contract import API_CHANNEL, SANDBOX_CHANNEL, WEB_CHANNEL

#: Channels whose channel id is their application's id, taken in without a channel document: the
#: widget's, and the API channel's (a tenant's server posts with an API key; the document an API
#: channel may have only says where its outgoing webhooks go, for the platform sender).
APPLICATION_CHANNELS = (WEB_CHANNEL, API_CHANNEL)
#: What is read from a channel's document and cached; nothing else (above all no credentials).
CACHED_FIELDS = ("_id", "workspace_id", "application_id", "type", "status")
ACTIVE = "active"


class ChannelledRecord(Protocol):
    """What a pipeline record says of where it came from (``streams.records.PipelineRecord``)."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def application_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def channel_id(self) -> str: ...


def cache_key(channel_id: str) -> str:
    return f"config:channel:{channel_id}"


class UnknownChannel(NotFound):
    """The record names a channel that is not one of its application's, of its type."""


class ChannelDisconnected(ValidationFailed):
    """The record came in on a channel that has since been disconnected (or never finished)."""


def summary(document: Document) -> Document:
    """The cacheable part of a channel's document."""
    return {key: document[key] for key in CACHED_FIELDS if key in document}


def check(record: ChannelledRecord, channel: Document | None) -> Document:
    """``channel`` (the document ``record.channel_id`` names) if it may carry ``record``; or raise.

    Another tenant's channel, and a channel of another type, get the same answer as a missing
    one: a record never learns what exists outside its application.
    """
    if (
        channel is None
        or channel.get("workspace_id") != record.workspace_id
        or channel.get("application_id") != record.application_id
        or channel.get("type") != record.channel
    ):
        raise UnknownChannel(f"{record.channel} channel {record.channel_id!r} does not exist")
    if channel.get("status") != ACTIVE:
        raise ChannelDisconnected(
            f"{record.channel} channel {record.channel_id!r} is not connected"
            f" (status {channel.get('status')!r})"
        )
    return channel


class ChannelDirectory:
    def __init__(self, db: AsyncDatabase[Document], redis: Redis) -> None:
        self._channels = db["channels"]
        self._redis = redis

    async def resolve(self, record: ChannelledRecord) -> Document:
        """The channel ``record`` came in on, once it is known to be the record's own and connected.

        Raises ``UnknownChannel`` or ``ChannelDisconnected``. The widget, the API and the sandbox
        take messages without a channel document: the widget's and the API's channel is their
        application, and sandbox records are replays (``switchboard replay refeed``) of messages
        that were checked when they arrived.
        """
        if record.channel in APPLICATION_CHANNELS:
            if record.channel_id != record.application_id:
                what = "the widget's" if record.channel == WEB_CHANNEL else "the API's"
                raise UnknownChannel(
                    f"{record.channel} channel {record.channel_id!r} does not exist: "
                    f"{what} channel is its application"
                )
            return self._implicit(record)
        if record.channel == SANDBOX_CHANNEL:
            return self._implicit(record)
        return check(record, await self._find(record.channel_id) if record.channel_id else None)

    async def invalidate(self, channel_id: str) -> None:
        await self._redis.delete(cache_key(channel_id))

    async def _find(self, channel_id: str) -> Document | None:
        cached = await self._redis.get(cache_key(channel_id))
        if cached is not None:
            channel: Document = json.loads(cached)
            return channel
        found = await self._channels.find_one({"_id": channel_id}, projection=list(CACHED_FIELDS))
        if found is None:
            return None  # not cached: a channel connected a moment later is seen at once
        channel = summary(found)
        await self._redis.set(
            cache_key(channel_id), json.dumps(channel, default=str), ex=CACHE_TTL_S
        )
        return channel

    @staticmethod
    def _implicit(record: ChannelledRecord) -> Document:
        """A channel without a document, described as one would be."""
        return {
            "_id": record.channel_id,
            "workspace_id": record.workspace_id,
            "application_id": record.application_id,
            "type": record.channel,
            "status": ACTIVE,
        }
