"""What the pipeline's handlers need: built once per worker process, closed when it stops.

Handlers receive these as an argument (``handle(record, deps)``), so they are tested without
Kafka; the agents get them from the Faust app, which carries the settings ``configure`` gave it.

The clients connect lazily: MongoDB at the first query (the indexes, at start), Redis, the
socket.io manager (Redis connections of its own) and the tenant tools' HTTP session at first
use, the model thread and each model's HTTP client at a turn's first call. Every one is closed
once the app has stopped its agents, so none is closed under a stage still using it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from agents.runtime.tool_results import ToolResults
from core.ai.model_thread import ModelThread
from core.ai.tools import ToolDirectory
from core.cached.applications import ApplicationDirectory
from core.cached.channel_directory import ChannelDirectory
from core.channels.registry import ChannelRegistry, channel_registry
from core.clients.cache import new_redis
from core.clients.database import Document, database, new_mongo_client
from core.clients.realtime import RealtimeEmitter
from core.security.egress import EgressClient, EgressPolicy
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.conversation_store import ConversationStore
from core.stores.delivery_marks import DeliveryMarks
from core.stores.recent_messages import RecentMessages
from core.stores.usage import UsageLedger

log = logging.getLogger(__name__)


@dataclass
class PipelineDeps:
    settings: Settings
    mongo: AsyncMongoClient[Document]
    store: ConversationStore
    applications: ApplicationDirectory
    channels: ChannelDirectory
    realtime: RealtimeEmitter
    recent: RecentMessages
    marks: DeliveryMarks
    redis: Redis
    usage: UsageLedger
    tools: ToolDirectory
    secrets: SecretBox
    egress: EgressClient
    tool_results: ToolResults
    #: The messaging platforms' adapters, for the platform sender.
    channel_adapters: ChannelRegistry
    #: Model calls' own loop, and the model clients made on it (``core.ai.model_thread``).
    models: ModelThread = field(default_factory=ModelThread)

    async def close(self) -> None:
        """Close every client; one that fails to close leaves the others to close."""
        closers: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("the model clients", self.models.close),
            ("the tools' HTTP session", self.egress.close),
            ("the channel adapters", self.channel_adapters.close),
            ("the socket.io manager", self.realtime.close),
            ("Redis", self.redis.aclose),
            ("MongoDB", self.mongo.close),
        ]
        for what, close in closers:
            try:
                await close()
            except Exception as error:  # closing at shutdown: report it, and go on
                log.warning("could not close %s: %r", what, error)


def open_deps(settings: Settings) -> PipelineDeps:
    """Every client, made but not connected yet."""
    mongo = new_mongo_client(settings)
    db = database(mongo, settings)
    redis = new_redis(settings)
    return PipelineDeps(
        settings=settings,
        mongo=mongo,
        store=ConversationStore(db),
        applications=ApplicationDirectory(db, redis),
        channels=ChannelDirectory(db, redis),
        realtime=RealtimeEmitter(settings),
        recent=RecentMessages(redis),
        marks=DeliveryMarks(redis),
        redis=redis,
        usage=UsageLedger(db),
        tools=ToolDirectory(db, redis),
        secrets=SecretBox(settings.encryption_key.get_secret_value()),
        egress=EgressClient(
            EgressPolicy.from_setting(
                settings.tool_allow_networks,
                timeout_s=settings.tool_timeout_s,
                max_response_bytes=settings.tool_max_response_bytes,
            )
        ),
        tool_results=ToolResults(redis),
        channel_adapters=channel_registry(settings),
    )


@asynccontextmanager
async def pipeline_deps(settings: Settings) -> AsyncIterator[PipelineDeps]:
    """The deps, their indexes ensured, for the length of the block; closed after it."""
    deps = open_deps(settings)
    try:
        await deps.store.ensure_indexes()
        await deps.usage.ensure_indexes()
        yield deps
    finally:
        await deps.close()


async def deps_of(app: Any) -> PipelineDeps:
    """The worker's dependencies, made once, on first use inside the worker's event loop.

    Every agent asks at its start, at the same time: they all wait for the one set. Its close
    joins the app's exit stack (``mode.Service.add_async_context``), which the app unwinds when
    it stops, after its agents have stopped. A set that could not be made is made again by the
    next to ask.
    """
    making: asyncio.Future[PipelineDeps] | None = getattr(app, "switchboard_deps", None)
    if making is None or (making.done() and (making.cancelled() or making.exception())):
        settings: Settings = app.switchboard_settings
        making = asyncio.ensure_future(app.add_async_context(pipeline_deps(settings)))
        app.switchboard_deps = making
    # Shielded: an agent cancelled while the deps are made does not cancel them for the rest.
    return await asyncio.shield(making)
