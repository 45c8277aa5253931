"""Conversations and messages in MongoDB, written idempotently: the message id is the ``_id``.

A redelivered record writes nothing twice: inserts of a known id are recognised and ignored.
The per-message path only inserts and reads by ``_id``, never updates: FerretDB answers those
in about a millisecond but scans the collection for an update (90 ms at 10,000 messages, seen
here), and MongoDB is fast either way. Updates are left to rare events such as a mode change.
"""

from __future__ import annotations

import contextlib
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
        self._deliveries = db["deliveries"]

    async def ensure_indexes(self) -> None:
        await self._messages.create_index(
            [("conversation_id", ASCENDING), ("seq", ASCENDING)], name="conversation_seq"
        )
        await self._deliveries.create_index(
            [("workspace_id", ASCENDING), ("conversation_id", ASCENDING)], name="conversation"
        )
        await self._conversations.create_index(
            [("workspace_id", ASCENDING), ("updated_at", DESCENDING)], name="workspace_updated"
        )

    async def create_conversation(self, fields: dict[str, Any], *, mode: str) -> bool:
        """Create the conversation; False when it already exists."""
        now = time.time()
        document = {"_id": fields["conversation_id"], **fields, "mode": mode}
        try:
            await self._conversations.insert_one({**document, "created_at": now, "updated_at": now})
        except DuplicateKeyError:
            return False
        return True

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

    async def delivery(self, message_id: str) -> Document | None:
        """How a message was delivered, if it was."""
        return await self._deliveries.find_one({"_id": message_id})

    async def record_delivery(self, message: dict[str, Any], status: str) -> None:
        """Record that a message was routed (platforms) or pushed (web); once per message."""
        with contextlib.suppress(DuplicateKeyError):
            await self._deliveries.insert_one(
                {
                    "_id": message["message_id"],
                    "conversation_id": message["conversation_id"],
                    "workspace_id": message["workspace_id"],
                    "status": status,
                    "at": time.time(),
                }
            )
