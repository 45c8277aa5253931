"""What the socket service's namespaces use, opened once in the service's ``cleanup_ctx``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis

from core.clients.producer import LazyProducer
from core.security.rate_limits import RateLimits
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.blocked_visitors import BlockedVisitors
from core.stores.conversation_store import ConversationStore
from core.stores.recent_messages import RecentMessages
from web.socket.widget_keys import WidgetKeys


@dataclass(frozen=True)
class SocketDeps:
    settings: Settings
    tokens: TokenService
    widget_keys: WidgetKeys
    conversations: ConversationStore
    recent: RecentMessages
    applications: ApplicationStore
    producer: LazyProducer
    redis: Redis
    blocked: BlockedVisitors
    limits: RateLimits


SOCKET_DEPS = web.AppKey("socket_deps", SocketDeps)
SIO = web.AppKey("sio", socketio.AsyncServer)


class Refused(socketio.exceptions.ConnectionRefusedError):  # type: ignore[misc]
    """A refused connection, with the API's error shape as its data (docs/realtime.md), and
    what else the code calls for (``retry_after_s`` for ``rate_limited``)."""

    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(message, {"code": code, "message": message, **extra})


def failure(code: str, message: str) -> dict[str, Any]:
    """The ack of a request that changed nothing."""
    return {"ok": False, "error": {"code": code, "message": message}}
