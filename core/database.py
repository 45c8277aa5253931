"""MongoDB through PyMongo's asyncio API; the same code runs on FerretDB and on MongoDB."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from core.settings import Settings

Document = dict[str, Any]


def new_mongo_client(settings: Settings, *, timeout_ms: int = 5000) -> AsyncMongoClient[Document]:
    """A client that connects lazily, so a service starts even while the database is down."""
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="switchboard",
    )


def database(client: AsyncMongoClient[Document], settings: Settings) -> AsyncDatabase[Document]:
    return client[settings.mongo_database]
