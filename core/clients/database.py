"""MongoDB through PyMongo's asyncio API; the same code runs on FerretDB and on MongoDB."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from core.settings import Settings

Document = dict[str, Any]


def new_mongo_client(settings: Settings, *, timeout_ms: int = 5000) -> AsyncMongoClient[Document]:
    """A client that connects lazily, so a service starts even while the database is down."""
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        maxIdleTimeMS=settings.mongo_max_idle_ms,
        tz_aware=True,
        appname="switchboard",
    )


def database(client: AsyncMongoClient[Document], settings: Settings) -> AsyncDatabase[Document]:
    return client[settings.mongo_database]


async def find_in_workspace(
    collection: AsyncCollection[Document], document_id: str, workspace_id: str
) -> Document | None:
    """The document with this ``_id`` if it belongs to ``workspace_id``, else None (another
    workspace's document reads as missing).

    The filter is the ``_id`` alone and the workspace is checked here: FerretDB on SQLite looks
    a document up by ``_id`` only when ``_id`` is the whole filter, and scans the collection
    otherwise (measured: 2.5 ms against 20 ms at 425 users, seconds at 200,000 messages).
    MongoDB is fast either way.
    """
    found: Document | None = await collection.find_one({"_id": document_id})
    if found is None or found.get("workspace_id") != workspace_id:
        return None
    return found
