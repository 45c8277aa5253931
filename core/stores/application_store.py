"""Applications and their API keys in MongoDB, every query scoped by the caller's workspace.

An id from another workspace is as unknown as a missing one (``NotFound``). An API key is shown
once, when it is made; only its SHA-256 is stored (a key is 32 random bytes, so a fast hash is
enough: there is nothing to guess), with its first characters to tell keys apart in a list.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from core.clients.database import Document, find_in_workspace
from core.errors import NotFound, ValidationFailed
from core.ids import new_id

log = logging.getLogger(__name__)

API_KEY_PREFIX = "sbk_"
WIDGET_KEY_PREFIX = "pk_"
#: Every widget key ever made: the prefix and 24 random bytes, URL-safe base64 (32 characters).
#: Anything else is refused before a lookup.
WIDGET_KEY = re.compile(r"pk_[A-Za-z0-9_-]{32}")
#: How much of a key is kept in clear, to tell keys apart in a list.
SHOWN_PREFIX_CHARS = 8


class ApplicationNotFound(NotFound):
    pass


class ApiKeyNotFound(NotFound):
    pass


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_widget_key() -> str:
    return WIDGET_KEY_PREFIX + secrets.token_urlsafe(24)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApplicationStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._applications = db["applications"]
        self._chatbots = db["chatbots"]
        self._keys = db["api_keys"]

    async def ensure_indexes(self) -> None:
        await self._applications.create_index(
            [("workspace_id", ASCENDING), ("created_at", ASCENDING)], name="workspace_created"
        )
        await self._applications.create_index([("widget_key", ASCENDING)], name="widget_key")
        await self._keys.create_index([("hash", ASCENDING)], name="hash")

    async def of_workspace(self, workspace_id: str) -> list[Document]:
        cursor = self._applications.find({"workspace_id": workspace_id}).sort("created_at", 1)
        return [document async for document in cursor]

    async def get(self, workspace_id: str, application_id: str) -> Document:
        found = await find_in_workspace(self._applications, application_id, workspace_id)
        if found is None:
            raise ApplicationNotFound(f"application {application_id} does not exist")
        return found

    async def create(self, workspace_id: str, fields: dict[str, Any]) -> Document:
        await self._check_chatbot(workspace_id, fields.get("chatbot_id"))
        now = time.time()
        document: Document = {
            "_id": new_id("app"),
            "workspace_id": workspace_id,
            "prompt": "",
            "chatbot_id": None,
            "welcome_message": "",
            "budget": None,
            **fields,
            "widget_key": new_widget_key(),
            "created_at": now,
            "updated_at": now,
        }
        await self._applications.insert_one(document)
        return document

    async def update(
        self, workspace_id: str, application_id: str, fields: dict[str, Any]
    ) -> Document:
        if "chatbot_id" in fields:
            await self._check_chatbot(workspace_id, fields["chatbot_id"])
        updated = await self._applications.find_one_and_update(
            {"_id": application_id, "workspace_id": workspace_id},
            {"$set": {**fields, "updated_at": time.time()}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise ApplicationNotFound(f"application {application_id} does not exist")
        return updated

    async def rotate_widget_key(self, workspace_id: str, application_id: str) -> Document:
        """Give the application a new widget key; the old one names nothing from now on."""
        return await self.update(workspace_id, application_id, {"widget_key": new_widget_key()})

    async def delete(self, workspace_id: str, application_id: str) -> None:
        """Delete the application and its API keys, so no key outlives it."""
        deleted = await self._applications.delete_one(
            {"_id": application_id, "workspace_id": workspace_id}
        )
        if deleted.deleted_count == 0:
            raise ApplicationNotFound(f"application {application_id} does not exist")
        await self._keys.delete_many(
            {"workspace_id": workspace_id, "application_id": application_id}
        )

    async def _check_chatbot(self, workspace_id: str, chatbot_id: object) -> None:
        """A linked chatbot must be one of the workspace's (another tenant's is unknown)."""
        if chatbot_id is None:
            return
        if await find_in_workspace(self._chatbots, str(chatbot_id), workspace_id) is None:
            raise ValidationFailed(
                "no such chatbot in this workspace",
                details=[{"field": "chatbot_id", "message": f"no chatbot {chatbot_id}"}],
            )

    async def keys(self, workspace_id: str, application_id: str) -> list[Document]:
        await self.get(workspace_id, application_id)
        cursor = self._keys.find(
            {"workspace_id": workspace_id, "application_id": application_id}
        ).sort("created_at", 1)
        return [document async for document in cursor]

    async def create_key(
        self, workspace_id: str, application_id: str, name: str
    ) -> tuple[Document, str]:
        """A new key's document and the key itself, which is not stored and never shown again."""
        await self.get(workspace_id, application_id)
        key = new_api_key()
        document: Document = {
            "_id": new_id("key"),
            "workspace_id": workspace_id,
            "application_id": application_id,
            "name": name,
            "prefix": key[:SHOWN_PREFIX_CHARS],
            "hash": key_hash(key),
            "created_at": time.time(),
            "revoked_at": None,
        }
        await self._keys.insert_one(document)
        return document, key

    async def revoke_key(self, workspace_id: str, application_id: str, key_id: str) -> None:
        """Revoke a key; revoking a revoked key changes nothing and is not an error."""
        query = {"_id": key_id, "workspace_id": workspace_id, "application_id": application_id}
        found = await self._keys.find_one(query)
        if found is None:
            raise ApiKeyNotFound(f"API key {key_id} does not exist")
        if found.get("revoked_at") is None:
            await self._keys.update_one(query, {"$set": {"revoked_at": time.time()}})

    async def live_key(self, key: str) -> Document | None:
        """The document of ``key`` if it exists and is not revoked."""
        if not key.startswith(API_KEY_PREFIX):
            return None
        found = await self._keys.find_one({"hash": key_hash(key)})
        if found is None or found.get("revoked_at") is not None:
            return None
        return found
