"""Widget visitors an application's operators have blocked: their tokens are refused.

MongoDB holds the list operators read and change (scoped by workspace and application, which the
caller has checked); Redis holds the flag the socket service reads on every connect and message,
a single lookup. The flag lives as long as a visitor token does (``visitor_token_ttl_s``): a
blocked visitor is refused from the moment of the block, so gets no fresh token, and every token
they hold has expired by then. A Redis that lost its data forgets the flags (as it forgets
signed-out sessions); the list stays in MongoDB.
"""

from __future__ import annotations

import re
import time

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.clients.database import Document
from core.errors import NotFound

#: What the socket service makes visitor ids of (``web.socket.widget.new_visitor_id``).
VISITOR_ID = re.compile(r"v_[0-9a-f]{32}")


class BlockNotFound(NotFound):
    pass


def flag_key(application_id: str, visitor_id: str) -> str:
    return f"widget:blocked:{application_id}:{visitor_id}"


class BlockedVisitors:
    def __init__(self, db: AsyncDatabase[Document], redis: Redis, flag_ttl_s: int) -> None:
        self._blocked = db["blocked_visitors"]
        self._redis = redis
        self._flag_ttl_s = flag_ttl_s

    async def ensure_indexes(self) -> None:
        await self._blocked.create_index(
            [("workspace_id", ASCENDING), ("application_id", ASCENDING), ("blocked_at", ASCENDING)],
            name="workspace_application_blocked",
        )

    async def block(
        self, workspace_id: str, application_id: str, visitor_id: str, blocked_by: str
    ) -> Document:
        """Block the visitor (again: nothing changes but the flag's lifetime)."""
        document: Document = {
            "_id": f"{application_id}:{visitor_id}",
            "workspace_id": workspace_id,
            "application_id": application_id,
            "visitor_id": visitor_id,
            "blocked_by": blocked_by,
            "blocked_at": time.time(),
        }
        found = await self._blocked.find_one({"_id": document["_id"], "workspace_id": workspace_id})
        if found is None:
            await self._blocked.insert_one(document)
        await self._redis.set(flag_key(application_id, visitor_id), "1", ex=self._flag_ttl_s)
        return found or document

    async def unblock(self, workspace_id: str, application_id: str, visitor_id: str) -> None:
        deleted = await self._blocked.delete_one(
            {"_id": f"{application_id}:{visitor_id}", "workspace_id": workspace_id}
        )
        if deleted.deleted_count == 0:
            raise BlockNotFound(f"visitor {visitor_id} is not blocked")
        await self._redis.delete(flag_key(application_id, visitor_id))

    async def of_application(self, workspace_id: str, application_id: str) -> list[Document]:
        cursor = self._blocked.find(
            {"workspace_id": workspace_id, "application_id": application_id}
        ).sort("blocked_at", 1)
        return [document async for document in cursor]

    async def forget_application(self, workspace_id: str, application_id: str) -> None:
        """Drop the application's list (its flags lapse with the tokens they refuse)."""
        await self._blocked.delete_many(
            {"workspace_id": workspace_id, "application_id": application_id}
        )

    async def is_blocked(self, application_id: str, visitor_id: str) -> bool:
        return bool(await self._redis.exists(flag_key(application_id, visitor_id)))
