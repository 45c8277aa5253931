"""The socket service: the widget's web chat and the operators' live feed, over socket.io.

A python-socketio ``AsyncServer`` on this aiohttp app, with an ``AsyncRedisManager``: every
instance behind the gateway hears every emit, so a client may be connected to any of them, and
workers push through a write-only manager on the same Redis channel (``core.clients.realtime``).
The protocol is in docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web
from aiohttp.typedefs import Handler

from core import json_depth
from core.cached.applications import ApplicationDirectory
from core.clients.database import database
from core.clients.producer import LazyProducer
from core.clients.realtime import INBOX_NAMESPACE, close_manager
from core.security.rate_limits import RateLimits
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.blocked_visitors import BlockedVisitors
from core.stores.conversation_store import ConversationStore
from core.stores.recent_messages import RecentMessages
from web.errors import error_response
from web.health import Dependency
from web.keys import MONGO, PRODUCER, REDIS, SETTINGS
from web.service import service_app
from web.socket.deps import SIO, SOCKET_DEPS, SocketDeps
from web.socket.event_feed import EventFeed
from web.socket.inbox import InboxNamespace
from web.socket.manager import IndexedRedisManager
from web.socket.widget import WidgetNamespace
from web.socket.widget_keys import WidgetKeys

DEPENDENCIES = (Dependency.REDIS, Dependency.MONGODB, Dependency.KAFKA)
EVENT_FEED = web.AppKey("event_feed", EventFeed)
STOP_TIMEOUT_S = 10.0


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "socket", DEPENDENCIES)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=IndexedRedisManager(settings.redis_url),
        cors_allowed_origins="*",  # the widget is embedded on any site; auth is in the payload
        # Packets are decoded with their nesting bounded: a deep one is dropped as malformed
        # instead of exhausting the parser's stack, which closed the client's websocket.
        json=json_depth,
    )
    sio.register_namespace(WidgetNamespace(app))
    sio.register_namespace(InboxNamespace(app))
    sio.attach(app)
    app.middlewares.append(_refusals_as_json)
    app[SIO] = sio
    app.cleanup_ctx.extend([_deps_ctx, _server_ctx, _feed_ctx])
    return app


@web.middleware
async def _refusals_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Engine.IO refuses a bad handshake in plain text; answer in the API's error shape."""
    response = await handler(request)
    if (
        400 <= response.status < 500
        and isinstance(response, web.Response)
        and response.content_type == "text/plain"
    ):
        message = (response.text or "").strip().strip('"') or "bad socket.io request"
        return error_response(response.status, "bad_request", message)
    return response


async def _deps_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = database(app[MONGO], settings)
    producer = LazyProducer(settings)
    app[PRODUCER] = producer
    await producer.start()
    redis = app[REDIS]
    app[SOCKET_DEPS] = SocketDeps(
        settings=settings,
        tokens=TokenService(settings),
        # No per-process copy of applications: a replaced widget key is refused at once.
        widget_keys=WidgetKeys(db, redis, ApplicationDirectory(db, redis, local_ttl_s=0)),
        conversations=ConversationStore(db),
        recent=RecentMessages(redis),
        applications=ApplicationStore(db),
        producer=producer,
        redis=redis,
        blocked=BlockedVisitors(db, redis, settings.visitor_token_ttl_s),
        limits=RateLimits(redis),
    )
    yield
    await producer.stop()


async def _server_ctx(app: web.Application) -> AsyncIterator[None]:
    sio = app[SIO]
    # Listen on Redis from the start, not from the first client's arrival, so an emit made
    # through another instance in the meantime is not missed.
    sio.manager_initialized = True
    sio.manager.initialize()
    yield
    await sio.shutdown()
    listener = getattr(sio.manager, "thread", None)
    if isinstance(listener, asyncio.Task):
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    await close_manager(sio.manager)


async def _feed_ctx(app: web.Application) -> AsyncIterator[None]:
    sio = app[SIO]

    async def to_inbox(event: dict[str, Any], rooms: list[str]) -> None:
        await sio.emit("event", event, room=rooms, namespace=INBOX_NAMESPACE)

    feed = EventFeed(app[SETTINGS], to_inbox)
    app[EVENT_FEED] = feed
    task = asyncio.create_task(feed.run(), name="inbox-feed")
    yield
    task.cancel()
    # Bounded: a consumer leaving its group mid-rebalance can hang, and must not hold up exit.
    await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
