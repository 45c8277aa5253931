"""Conversations and messages in MongoDB, written idempotently: the message id is the ``_id``.

A redelivered record writes nothing twice: inserts of a known id are recognised and ignored.
The per-message path only inserts, a batch of documents per round trip, never updates or looks
up: FerretDB inserts 200 messages in about 7 ms, but scans the collection for an update or for
an ``_id`` it does not have (90 ms at 10,000 messages, seen here); MongoDB is fast either way.
Updates are left to rare events such as a mode change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from core.clients.database import Document, find_in_workspace

DUPLICATE_KEY = 11000


class ConversationStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._conversations = db["conversations"]
        self._messages = db["messages"]

    async def ensure_indexes(self) -> None:
        await self._messages.create_index(
            [("conversation_id", ASCENDING), ("seq", ASCENDING)], name="conversation_seq"
        )
        await self._conversations.create_index(
            [("workspace_id", ASCENDING), ("updated_at", DESCENDING)], name="workspace_updated"
        )

    async def create_conversations(self, documents: Sequence[Document]) -> set[str]:
        """Create the conversations that do not exist yet; the ids of those created now."""
        now = time.time()
        return await insert_new(
            self._conversations,
            [{**d, "created_at": d.get("created_at", now), "updated_at": now} for d in documents],
        )

    async def set_conversation(self, conversation_id: str, **fields: Any) -> None:
        await self._conversations.update_one(
            {"_id": conversation_id}, {"$set": {**fields, "updated_at": time.time()}}
        )

    async def set_message_status(self, message_id: str, status: str) -> None:
        """A message's delivery status, once its channel said (``sent``, ``failed``)."""
        await self._messages.update_one({"_id": message_id}, {"$set": {"status": status}})

    async def insert_messages(self, messages: Sequence[Document]) -> set[str]:
        """Store messages under their ids; the ids of those stored now (not already there)."""
        return await insert_new(self._messages, messages)

    async def conversation(self, conversation_id: str, workspace_id: str) -> Document | None:
        return await find_in_workspace(self._conversations, conversation_id, workspace_id)

    async def find(self, conversation_id: str) -> Document | None:
        return await self._conversations.find_one({"_id": conversation_id})

    async def message(self, message_id: str) -> Document | None:
        return await self._messages.find_one({"_id": message_id})

    async def catch_up(
        self, conversation_id: str, last_id: str | None, *, limit: int
    ) -> list[Document]:
        """What a reconnecting widget missed, oldest first: the messages after ``last_id``, or
        the latest ``limit`` when it names no message of this conversation. Suppressed bot
        answers were never shown, so they are not sent now either."""
        anchor = await self.message(last_id) if last_id else None
        if anchor is not None and anchor.get("conversation_id") != conversation_id:
            anchor = None
        query: dict[str, Any] = {"conversation_id": conversation_id}
        if anchor is not None:
            query["created_at"] = {"$gte": anchor["created_at"]}
        found = (
            await self._messages.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
            .to_list()
        )
        found.reverse()
        return [
            m for m in found[-limit:] if m["_id"] != last_id and m.get("status") != "suppressed"
        ]


async def insert_new(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> set[str]:
    """Insert every document whose ``_id`` is new, in one round trip; the ids inserted now."""
    if not documents:
        return set()
    try:
        await collection.insert_many(list(documents), ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        failed = {e["index"] for e in errors}
        return {str(d["_id"]) for i, d in enumerate(documents) if i not in failed}
    return {str(d["_id"]) for d in documents}
