"""Pushes to socket.io clients from processes that are not the socket service.

A write-only Redis manager publishes on the channel the socket service's own AsyncRedisManager
listens to, so whichever socket instance holds the client's connection delivers the push.
"""

from __future__ import annotations

from typing import Any

import socketio

from core.settings import Settings

WIDGET_NAMESPACE = "/widget"
INBOX_NAMESPACE = "/inbox"


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class RealtimeEmitter:
    def __init__(self, settings: Settings) -> None:
        self._manager = socketio.AsyncRedisManager(settings.redis_url, write_only=True)

    async def to_conversation(self, conversation_id: str, event: str, data: dict[str, Any]) -> None:
        await self._manager.emit(
            event, data, room=conversation_room(conversation_id), namespace=WIDGET_NAMESPACE
        )

    async def close(self) -> None:
        await close_manager(self._manager)


async def close_manager(manager: socketio.AsyncRedisManager) -> None:
    """Close the Redis connections a socket.io Redis manager opened (it has no close of its own)."""
    pubsub = getattr(manager, "pubsub", None)
    if pubsub is not None:
        await pubsub.aclose()
    redis = getattr(manager, "redis", None)
    if redis is not None:
        await redis.aclose()
