"""The read side of conversations for operators: lists, history and search, always by workspace.

Every query names the caller's workspace, so an id from another workspace finds nothing and
answers ``NotFound`` exactly as a missing one does. Pages are keyed, not skipped: a cursor holds
the sort key of the last item a page returned, so items inserted or updated while someone pages
never make the next page repeat or drop one (an offset would).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from core.clients.database import Document, find_in_workspace
from core.errors import NotFound


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last item's sort time and its ``_id`` (the tie-breaker)."""

    at: float
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.at, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` wrote; ValueError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError) as error:
            raise ValueError("not a cursor this service issued") from error
        if (
            not isinstance(value, list)
            or len(value) != 2
            or isinstance(value[0], bool)
            or not isinstance(value[0], int | float)
            or not math.isfinite(value[0])
            or not isinstance(value[1], str)
        ):
            raise ValueError("not a cursor this service issued")
        return cls(float(value[0]), value[1])


@dataclass(frozen=True)
class ConversationFilter:
    application_id: str | None = None
    mode: str | None = None
    channel: str | None = None
    assignee_id: str | None = None
    updated_since: float | None = None


@dataclass(frozen=True)
class Page:
    items: list[Document]
    next_cursor: str | None


def _after(field: str, cursor: Cursor | None, *, newest_first: bool) -> dict[str, Any]:
    """The condition for items strictly past ``cursor`` in (field, _id) order."""
    if cursor is None:
        return {}
    op = "$lt" if newest_first else "$gt"
    return {
        "$or": [
            {field: {op: cursor.at}},
            {field: cursor.at, "_id": {op: cursor.id}},
        ]
    }


def _page(documents: list[Document], limit: int, field: str) -> Page:
    """The first ``limit`` documents, and a cursor only when there was one more to fetch."""
    items = documents[:limit]
    if len(documents) <= limit or not items:
        return Page(items, None)
    last = items[-1]
    return Page(items, Cursor(float(last[field]), str(last["_id"])).encode())


class ConversationQueries:
    """Reads conversations, their messages and workspace members; the pipeline writes them."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._conversations = db["conversations"]
        self._messages = db["messages"]
        self._users = db["users"]

    async def conversation(self, conversation_id: str, workspace_id: str) -> Document:
        found = await find_in_workspace(self._conversations, conversation_id, workspace_id)
        if found is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return found

    async def conversations(
        self,
        workspace_id: str,
        where: ConversationFilter,
        *,
        limit: int,
        cursor: Cursor | None = None,
    ) -> Page:
        """The workspace's conversations, most recently updated first."""
        query: dict[str, Any] = {"workspace_id": workspace_id}
        equal: Mapping[str, str | None] = {
            "application_id": where.application_id,
            "mode": where.mode,
            "channel": where.channel,
            "assignee_id": where.assignee_id,
        }
        query.update({field: value for field, value in equal.items() if value is not None})
        if where.updated_since is not None:
            query["updated_at"] = {"$gte": where.updated_since}
        query.update(_after("updated_at", cursor, newest_first=True))
        found = (
            await self._conversations.find(query)
            .sort([("updated_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
            .to_list()
        )
        return _page(found, limit, "updated_at")

    async def messages(
        self,
        conversation_id: str,
        workspace_id: str,
        *,
        limit: int,
        cursor: Cursor | None = None,
    ) -> Page:
        """A conversation's messages, oldest first; NotFound for another workspace's."""
        await self.conversation(conversation_id, workspace_id)
        query: dict[str, Any] = {"conversation_id": conversation_id, "workspace_id": workspace_id}
        query.update(_after("created_at", cursor, newest_first=False))
        found = (
            await self._messages.find(query)
            .sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit + 1)
            .to_list()
        )
        return _page(found, limit, "created_at")

    async def search(
        self, workspace_id: str, text: str, *, limit: int, application_id: str | None = None
    ) -> list[Document]:
        """The workspace's messages containing ``text`` (any case), newest first.

        FerretDB has no text indexes, so this is a case-insensitive ``$regex`` of the escaped
        text: the caller's words are always matched literally, never run as a pattern (a
        crafted one could be slow or match everything). It scans the workspace's messages, fine
        for the volumes here; on MongoDB a text index over ``text`` with ``$text`` is the
        production path (stemming, ranking, and an index instead of a scan).
        """
        query: dict[str, Any] = {
            "workspace_id": workspace_id,
            "text": {"$regex": re.escape(text), "$options": "i"},
        }
        if application_id is not None:
            query["application_id"] = application_id
        return (
            await self._messages.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list()
        )

    async def is_member(self, user_id: str, workspace_id: str) -> bool:
        """Whether ``user_id`` is a user of the workspace (another workspace's user is not)."""
        return await find_in_workspace(self._users, user_id, workspace_id) is not None
