"""The latest messages of each web conversation, in Redis, for the widget's catch-up.

A reconnecting widget asks for what came after the last message it holds. MongoDB holds every
message, but on FerretDB any query other than a lookup by ``_id`` scans the whole collection
(4 s at 48,000 messages, measured here), too slow for every reconnect. So each message shown in
a widget is also appended here as the widget shows it (the delivery agent appends bot and
operator messages before pushing them, the socket service the visitor's own once Kafka has
them), and catch-up reads MongoDB only when this log cannot answer: a last id it does not hold,
or a conversation idle past the log's lifetime.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis

#: Messages kept per conversation; a client further behind than this reads MongoDB.
KEEP = 200
#: An idle conversation's log lapses after this long; MongoDB still has everything.
TTL_S = 7 * 24 * 3600

View = dict[str, Any]


def widget_view(
    message_id: str,
    conversation_id: str,
    role: str,
    text: str,
    created_at: object,
    request_id: str = "",
) -> View:
    """A message as the widget shows it (docs/realtime.md, ``message``): what is pushed, and
    what this log keeps."""
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "role": role,
        "text": text,
        "created_at": created_at,
        "request_id": request_id,
    }


def log_key(conversation_id: str) -> str:
    return f"widget:recent:{conversation_id}"


class RecentMessages:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def append(self, conversation_id: str, views: Sequence[View]) -> None:
        if not views:
            return
        key = log_key(conversation_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, *(json.dumps(v, ensure_ascii=False) for v in views))
            pipe.ltrim(key, -KEEP, -1)
            pipe.expire(key, TTL_S)
            await pipe.execute()

    async def after(self, conversation_id: str, last_id: str | None) -> list[View] | None:
        """The messages after ``last_id`` (the whole log without one), oldest first and each id
        once; None when the log cannot tell: it is empty, or does not hold ``last_id``."""
        raw = cast(list[bytes], await self._redis.lrange(log_key(conversation_id), 0, -1))
        views: list[View] = []
        seen: set[str] = set()
        for entry in raw:
            view = json.loads(entry)
            if view["id"] not in seen:
                seen.add(view["id"])
                views.append(view)
        if not views:
            return None
        if last_id is None:
            return views
        for index, view in enumerate(views):
            if view["id"] == last_id:
                return views[index + 1 :]
        return None
