"""Chatbots and tenant HTTP tools in MongoDB, every query scoped by the caller's workspace.

Secrets (a chatbot's model API key, a tool's secret header values) arrive here already sealed
(``core.security.secrets.SecretBox``); the store never sees them in clear. An id from another
workspace is as unknown as a missing one (``NotFound``).
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.clients.database import Document, find_in_workspace
from core.errors import Conflict, NotFound
from core.ids import new_id


class ChatbotNotFound(NotFound):
    pass


class ToolNotFound(NotFound):
    pass


async def _list(collection: AsyncCollection[Document], workspace_id: str) -> list[Document]:
    cursor = collection.find({"workspace_id": workspace_id}).sort("created_at", 1)
    return [document async for document in cursor]


async def _update(
    collection: AsyncCollection[Document],
    workspace_id: str,
    document_id: str,
    set_fields: dict[str, Any],
    unset_fields: list[str],
) -> Document | None:
    change: dict[str, Any] = {"$set": {**set_fields, "updated_at": time.time()}}
    if unset_fields:
        change["$unset"] = dict.fromkeys(unset_fields, "")
    return await collection.find_one_and_update(
        {"_id": document_id, "workspace_id": workspace_id},
        change,
        return_document=ReturnDocument.AFTER,
    )


def _new(prefix: str, workspace_id: str, fields: dict[str, Any]) -> Document:
    now = time.time()
    return {
        "_id": new_id(prefix),
        "workspace_id": workspace_id,
        **fields,
        "created_at": now,
        "updated_at": now,
    }


class ChatbotStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._chatbots = db["chatbots"]
        self._applications = db["applications"]

    async def of_workspace(self, workspace_id: str) -> list[Document]:
        return await _list(self._chatbots, workspace_id)

    async def get(self, workspace_id: str, chatbot_id: str) -> Document:
        found = await find_in_workspace(self._chatbots, chatbot_id, workspace_id)
        if found is None:
            raise ChatbotNotFound(f"chatbot {chatbot_id} does not exist")
        return found

    async def create(self, workspace_id: str, fields: dict[str, Any]) -> Document:
        document = _new("bot", workspace_id, fields)
        await self._chatbots.insert_one(document)
        return document

    async def update(
        self, workspace_id: str, chatbot_id: str, set_fields: dict[str, Any], unset: list[str]
    ) -> Document:
        updated = await _update(self._chatbots, workspace_id, chatbot_id, set_fields, unset)
        if updated is None:
            raise ChatbotNotFound(f"chatbot {chatbot_id} does not exist")
        return updated

    async def delete(self, workspace_id: str, chatbot_id: str) -> list[str]:
        """Delete the chatbot and unlink it from its applications; their ids (to invalidate)."""
        linked = await self.applications_of(workspace_id, chatbot_id)
        deleted = await self._chatbots.delete_one({"_id": chatbot_id, "workspace_id": workspace_id})
        if deleted.deleted_count == 0:
            raise ChatbotNotFound(f"chatbot {chatbot_id} does not exist")
        if linked:
            await self._applications.update_many(
                {"workspace_id": workspace_id, "chatbot_id": chatbot_id},
                {"$set": {"chatbot_id": None, "updated_at": time.time()}},
            )
        return linked

    async def applications_of(self, workspace_id: str, chatbot_id: str) -> list[str]:
        cursor = self._applications.find(
            {"workspace_id": workspace_id, "chatbot_id": chatbot_id}, projection=["_id"]
        )
        return [str(document["_id"]) async for document in cursor]


class ToolStore:
    """One document per tool, in the shape ``core.ai.tools.TenantTool.from_document`` reads."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._tools = db["tools"]

    async def ensure_indexes(self) -> None:
        await self._tools.create_index(
            [("workspace_id", ASCENDING), ("name", ASCENDING)], name="workspace_name", unique=True
        )

    async def of_workspace(self, workspace_id: str) -> list[Document]:
        return await _list(self._tools, workspace_id)

    async def names(self, workspace_id: str) -> set[str]:
        cursor = self._tools.find({"workspace_id": workspace_id}, projection=["name"])
        return {str(document.get("name")) async for document in cursor}

    async def get(self, workspace_id: str, tool_id: str) -> Document:
        found = await find_in_workspace(self._tools, tool_id, workspace_id)
        if found is None:
            raise ToolNotFound(f"tool {tool_id} does not exist")
        return found

    async def create(self, workspace_id: str, fields: dict[str, Any]) -> Document:
        await self._name_free(workspace_id, str(fields["name"]), None)
        document = _new("tool", workspace_id, fields)
        try:
            await self._tools.insert_one(document)
        except DuplicateKeyError as error:
            raise _taken(str(fields["name"])) from error
        return document

    async def update(
        self, workspace_id: str, tool_id: str, set_fields: dict[str, Any], unset: list[str]
    ) -> Document:
        if "name" in set_fields:
            await self._name_free(workspace_id, str(set_fields["name"]), tool_id)
        try:
            updated = await _update(self._tools, workspace_id, tool_id, set_fields, unset)
        except DuplicateKeyError as error:
            raise _taken(str(set_fields.get("name"))) from error
        if updated is None:
            raise ToolNotFound(f"tool {tool_id} does not exist")
        return updated

    async def delete(self, workspace_id: str, tool_id: str) -> None:
        deleted = await self._tools.delete_one({"_id": tool_id, "workspace_id": workspace_id})
        if deleted.deleted_count == 0:
            raise ToolNotFound(f"tool {tool_id} does not exist")

    async def _name_free(self, workspace_id: str, name: str, tool_id: str | None) -> None:
        """Tools are offered to the model by name: two with one name would shadow each other."""
        found = await self._tools.find_one({"workspace_id": workspace_id, "name": name})
        if found is not None and found["_id"] != tool_id:
            raise _taken(name)


def _taken(name: str) -> Conflict:
    return Conflict(
        f"this workspace already has a tool named {name!r}",
        details=[{"field": "name", "message": "already taken"}],
    )
