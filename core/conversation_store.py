"""Conversations and messages in MongoDB, written idempotently: the message id is the ``_id``.

A redelivered record writes nothing twice: inserts of a known id are recognised and ignored,
conversation upserts only set what is new.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.database import Document


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

    async def touch_conversation(self, fields: dict[str, Any], *, mode: str) -> bool:
        """Create the conversation if new (returns True), else update its activity and mode."""
        now = time.time()
        result = await self._conversations.update_one(
            {"_id": fields["conversation_id"]},
            {
                "$setOnInsert": {**fields, "created_at": now},
                "$set": {"mode": mode, "updated_at": now},
            },
            upsert=True,
        )
        return result.upserted_id is not None

    async def set_conversation(self, conversation_id: str, **fields: Any) -> None:
        await self._conversations.update_one(
            {"_id": conversation_id}, {"$set": {**fields, "updated_at": time.time()}}
        )

    async def insert_message(self, message: dict[str, Any]) -> bool:
        """Store a message under its id; False when it was already stored."""
        try:
            await self._messages.insert_one({"_id": message["message_id"], **message})
        except DuplicateKeyError:
            return False
        return True

    async def message(self, message_id: str) -> Document | None:
        return await self._messages.find_one({"_id": message_id})

    async def set_message_status(self, message_id: str, status: str) -> None:
        await self._messages.update_one(
            {"_id": message_id}, {"$set": {"status": status, "status_at": time.time()}}
        )
