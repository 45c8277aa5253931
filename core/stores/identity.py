"""Workspaces and their users (operators), every query scoped by workspace.

An email belongs to one account across the platform (a unique index on the lowercased address).
FerretDB has no transactions, so the writes that must keep a workspace with at least one owner
check afterwards and undo themselves when a concurrent change got there first.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.clients.database import Document, find_in_workspace
from core.errors import Conflict, NotFound
from core.ids import new_id

OWNER = "owner"
MAX_MEMBERS = 1000

# Deliberately loose (RFC 5322 allows far more than anyone uses): one @, no spaces, a dotted
# domain. Whether the mailbox exists is for a confirmation mail to find out, not a regex.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def normalise_email(value: str) -> str:
    """The address as stored and looked up: trimmed and lowercased; ValueError if not an email."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("not an email address")
    return email


def public_user(user: Document) -> dict[str, Any]:
    """What the API shows of a user: never the password hash."""
    return {
        "id": user["_id"],
        "workspace_id": user["workspace_id"],
        "email": user["email"],
        "name": user["name"],
        "role": user["role"],
        "created_at": user["created_at"],
    }


def public_workspace(workspace: Document) -> dict[str, Any]:
    return {
        "id": workspace["_id"],
        "name": workspace["name"],
        "created_at": workspace["created_at"],
    }


class EmailTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("an account with this email already exists")


class UserNotFound(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} does not exist")


class LastOwner(Conflict):
    def __init__(self) -> None:
        super().__init__("a workspace keeps at least one owner")


class IdentityStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._workspaces = db["workspaces"]
        self._users = db["users"]
        self._indexed = False

    async def ensure_indexes(self) -> None:
        """Idempotent; run before the first insert, since the service starts while Mongo is down."""
        if self._indexed:
            return
        await self._users.create_index([("email", ASCENDING)], name="email_unique", unique=True)
        await self._users.create_index(
            [("workspace_id", ASCENDING), ("created_at", ASCENDING)], name="workspace_created"
        )
        self._indexed = True

    async def register(
        self, *, email: str, name: str, password_hash: str, workspace_name: str
    ) -> tuple[Document, Document]:
        """A new workspace and its owner; EmailTaken (and nothing kept) if the email is in use.

        No look-up first: a taken email costs the same writes as a new one (the unique index
        refuses the user, and the workspace is taken back), so sign-up's timing tells nothing.
        """
        await self.ensure_indexes()
        now = time.time()
        workspace_id = new_id("ws")
        workspace: Document = {"_id": workspace_id, "name": workspace_name, "created_at": now}
        await self._workspaces.insert_one(workspace)
        try:
            user = await self._insert_user(workspace_id, email, name, OWNER, password_hash)
        except EmailTaken:
            await self._workspaces.delete_one({"_id": workspace_id})
            raise
        return user, workspace

    async def add_user(
        self, workspace_id: str, *, email: str, name: str, role: str, password_hash: str
    ) -> Document:
        await self.ensure_indexes()
        return await self._insert_user(workspace_id, email, name, role, password_hash)

    async def _insert_user(
        self, workspace_id: str, email: str, name: str, role: str, password_hash: str
    ) -> Document:
        user = {
            "_id": new_id("usr"),
            "workspace_id": workspace_id,
            "email": email,
            "name": name,
            "role": role,
            "password_hash": password_hash,
            "created_at": time.time(),
        }
        try:
            await self._users.insert_one(user)
        except DuplicateKeyError as error:
            raise EmailTaken() from error
        return user

    async def by_email(self, email: str) -> Document | None:
        """For sign-in only: the one query not scoped by workspace (the email is unique)."""
        return await self._users.find_one({"email": email})

    async def user(self, workspace_id: str, user_id: str) -> Document:
        """The user in this workspace; UserNotFound whether it is missing or another tenant's."""
        found = await find_in_workspace(self._users, user_id, workspace_id)
        if found is None:
            raise UserNotFound(user_id)
        return found

    async def workspace(self, workspace_id: str) -> Document | None:
        return await self._workspaces.find_one({"_id": workspace_id})

    async def members(self, workspace_id: str) -> list[Document]:
        cursor = self._users.find({"workspace_id": workspace_id}).sort("created_at", ASCENDING)
        return await cursor.to_list(MAX_MEMBERS)

    async def set_password_hash(self, workspace_id: str, user_id: str, password_hash: str) -> None:
        await self._users.update_one(
            {"_id": user_id, "workspace_id": workspace_id},
            {"$set": {"password_hash": password_hash}},
        )

    async def update_user(self, user: Document, *, name: str | None, role: str | None) -> Document:
        """Rename and/or change the role of ``user`` (already read in its workspace)."""
        changes: dict[str, str] = {}
        if name is not None:
            changes["name"] = name
        if role is not None:
            changes["role"] = role
        demotes_owner = user["role"] == OWNER and role not in (None, OWNER)
        if demotes_owner and await self._owners(user["workspace_id"]) <= 1:
            raise LastOwner()
        scope = {"_id": user["_id"], "workspace_id": user["workspace_id"]}
        if changes:
            result = await self._users.update_one(scope, {"$set": changes})
            if result.matched_count == 0:
                raise UserNotFound(user["_id"])
        if demotes_owner:
            await self._keep_an_owner(user, undo={"$set": {"role": OWNER}})
        return {**user, **changes}

    async def delete_user(self, user: Document) -> None:
        scope = {"_id": user["_id"], "workspace_id": user["workspace_id"]}
        if user["role"] == OWNER and await self._owners(user["workspace_id"]) <= 1:
            raise LastOwner()
        result = await self._users.delete_one(scope)
        if result.deleted_count == 0:
            raise UserNotFound(user["_id"])
        if user["role"] == OWNER:
            await self._keep_an_owner(user, undo=None)

    async def _owners(self, workspace_id: str) -> int:
        return await self._users.count_documents({"workspace_id": workspace_id, "role": OWNER})

    async def _keep_an_owner(self, user: Document, *, undo: dict[str, Any] | None) -> None:
        """After taking away an owner: if none is left (a concurrent change raced this one),
        put ``user`` back as it was and refuse. Both racers may undo; neither leaves zero."""
        if await self._owners(user["workspace_id"]) > 0:
            return
        if undo is None:
            await self._users.insert_one(user)
        else:
            await self._users.update_one(
                {"_id": user["_id"], "workspace_id": user["workspace_id"]}, undo
            )
        raise LastOwner()
