"""What the pipeline's handlers need, built once per worker process on first use.

Handlers receive these as an argument (``handle(record, deps)``), so they are tested without
Kafka; the agents get them from the Faust app, which carries the settings ``configure`` gave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from agents.runtime.tool_results import ToolResults
from core.ai.tools import ToolDirectory
from core.cached.applications import ApplicationDirectory
from core.cached.channel_directory import ChannelDirectory
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


async def build_deps(settings: Settings) -> PipelineDeps:
    mongo = new_mongo_client(settings)
    db = database(mongo, settings)
    store = ConversationStore(db)
    await store.ensure_indexes()
    usage = UsageLedger(db)
    await usage.ensure_indexes()
    redis = new_redis(settings)
    return PipelineDeps(
        settings=settings,
        mongo=mongo,
        store=store,
        applications=ApplicationDirectory(db, redis),
        channels=ChannelDirectory(db, redis),
        realtime=RealtimeEmitter(settings),
        recent=RecentMessages(redis),
        marks=DeliveryMarks(redis),
        redis=redis,
        usage=usage,
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
    )


async def deps_of(app: Any) -> PipelineDeps:
    """The worker's dependencies, created on first use inside the worker's event loop."""
    deps: PipelineDeps | None = getattr(app, "switchboard_deps", None)
    if deps is None:
        deps = await build_deps(app.switchboard_settings)
        app.switchboard_deps = deps
    return deps
