"""The MongoDB-wire server (FerretDB here) through PyMongo's async client: a unique index holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.clients.database import Document, new_mongo_client
from core.settings import Settings
from infra.services import SERVICE_CLASSES
from infra.stack import ensure_up


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    client = new_mongo_client(settings)
    name = f"test_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
        await client.drop_database(name)
    finally:
        await client.close()


async def test_insert_find_with_unique_index(db: AsyncDatabase[Document]) -> None:
    messages = db["messages"]
    await messages.create_index("message_id", unique=True)
    await messages.insert_one({"message_id": "m1", "workspace_id": "w1", "text": "hello"})

    with pytest.raises(DuplicateKeyError):
        await messages.insert_one({"message_id": "m1", "workspace_id": "w1", "text": "again"})

    found = await messages.find_one({"message_id": "m1"}, {"_id": 0})
    assert found == {"message_id": "m1", "workspace_id": "w1", "text": "hello"}
    assert await messages.count_documents({}) == 1


async def test_upsert_is_idempotent(db: AsyncDatabase[Document]) -> None:
    conversations = db["conversations"]
    for _ in range(3):
        await conversations.update_one(
            {"_id": "c1"}, {"$setOnInsert": {"mode": "bot"}, "$inc": {"seen": 1}}, upsert=True
        )
    assert await conversations.find_one({"_id": "c1"}) == {"_id": "c1", "mode": "bot", "seen": 3}


async def test_a_write_after_the_database_restarted_succeeds(settings: Settings) -> None:
    """After a restart the pool still holds connections the server closed, and a write on one
    fails without a retry (FerretDB has no retryable writes); idle ones are dropped instead."""
    client = new_mongo_client(settings.model_copy(update={"mongo_max_idle_ms": 500}))
    notes = client[f"test_{uuid.uuid4().hex[:8]}"]["notes"]
    ferretdb = SERVICE_CLASSES["ferretdb"](settings)
    try:
        await notes.insert_one({"n": 1})
        assert await asyncio.to_thread(ferretdb.process.stop), "FerretDB is not managed here"
        await asyncio.to_thread(ensure_up, ferretdb)
        await asyncio.sleep(1.0)  # past the idle limit: the pooled connection is not reused
        await notes.insert_one({"n": 2})
        assert await notes.count_documents({}) == 2
        await notes.database.client.drop_database(notes.database.name)
    finally:
        await client.close()
