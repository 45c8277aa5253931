"""The integrations service: platform webhooks, verified, deduplicated and produced to Kafka.

``POST /webhooks/{channel_type}/{channel_id}`` is the one route: its steps are in
``web.webhook_ingress``; the handler only reads the body and turns the outcome into an answer.
Platforms retry what is not a 2xx, so every answer says whether to: 200 taken (or already
taken, or dropped for a disconnected channel), 503 with ``Retry-After`` when Kafka did not ack
or another request is taking the same delivery, 4xx for what a retry would not change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from core.channels.registry import channel_registry
from core.clients.database import database
from core.clients.producer import LazyProducer
from core.errors import DependencyUnavailable
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import ChannelStore, RecentChannels
from web.errors import error_response
from web.health import Dependency
from web.keys import CHANNEL_REGISTRY, MONGO, PRODUCER, REDIS, SETTINGS, WEBHOOK_INGRESS
from web.service import service_app
from web.webhook_ingress import (
    Deliveries,
    Outcome,
    PlatformCalls,
    WebhookIngress,
    read_body,
)

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS, Dependency.KAFKA)
#: When a platform should try a delivery again that another request is taking right now.
IN_PROGRESS_RETRY_S = 5


async def receive_webhook(request: web.Request) -> web.Response:
    body = await read_body(request)
    try:
        outcome = await request.app[WEBHOOK_INGRESS].take(
            request.match_info["channel_type"],
            request.match_info["channel_id"],
            request.headers,
            body,
        )
    except DependencyUnavailable as unavailable:
        return _retry_later(unavailable.code, unavailable.message, 1)
    if outcome is Outcome.IN_PROGRESS:
        message = "this delivery is being taken by another request; retry shortly"
        return _retry_later("delivery_in_progress", message, IN_PROGRESS_RETRY_S)
    return web.json_response({"ok": True})


def _retry_later(code: str, message: str, retry_after_s: int) -> web.Response:
    response = error_response(503, code, message)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


async def _producer_ctx(app: web.Application) -> AsyncIterator[None]:
    producer = LazyProducer(app[SETTINGS])
    app[PRODUCER] = producer
    await producer.start()
    yield
    await producer.stop()


async def _ingress_ctx(app: web.Application) -> AsyncIterator[None]:
    """The channel adapters and the ingress, made once; after-ack calls still running at
    shutdown are given a moment, then cancelled, before the adapters close."""
    settings = app[SETTINGS]
    registry = channel_registry(settings)
    app[CHANNEL_REGISTRY] = registry
    redis = app[REDIS]
    ingress = WebhookIngress(
        channels=RecentChannels(ChannelStore(database(app[MONGO], settings))),
        registry=registry,
        box=SecretBox(settings.encryption_key.get_secret_value()),
        producer=app[PRODUCER],
        deliveries=Deliveries(redis, settings.webhook_dedup_ttl_s),
        status=ChannelStatus(redis),
        calls=PlatformCalls(),
    )
    app[WEBHOOK_INGRESS] = ingress
    yield
    await ingress.close()
    await registry.close()


def create_app(settings: Settings) -> web.Application:
    app = service_app(
        settings, "integrations", DEPENDENCIES, max_body_bytes=settings.webhook_max_body_bytes
    )
    app.cleanup_ctx.extend([_producer_ctx, _ingress_ctx])
    app.router.add_post("/webhooks/{channel_type}/{channel_id}", receive_webhook)
    return app
