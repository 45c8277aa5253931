"""Password-reset tokens: random, short-lived, single-use, and stored only as a SHA-256.

The link mailed to the account's address carries the token; the database holds its SHA-256
(the token has 256 random bits, so the digest cannot be turned back into it), the user it
belongs to and when it lapses. Redeeming claims it in Redis with ``SET NX`` (FerretDB's
conditional writes are not atomic, see ``core.security.sessions``), so of two concurrent
uses only one wins, then deletes every reset token of that user.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.clients.database import Document
from core.errors import SwitchboardError


class ResetTokenInvalid(SwitchboardError):
    status = 400
    code = "invalid_reset_token"

    def __init__(self) -> None:
        super().__init__("this reset link is not valid or has expired; ask for a new one")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordResets:
    def __init__(self, db: AsyncDatabase[Document], redis: Redis, *, ttl_s: int) -> None:
        self._resets = db["password_resets"]
        self._redis = redis
        self._ttl_s = ttl_s
        self._indexed = False

    async def _ensure_indexes(self) -> None:
        if not self._indexed:
            await self._resets.create_index([("user_id", ASCENDING)], name="user")
            self._indexed = True

    async def issue(self, user: Document) -> str:
        """A new token for ``user``; the user's earlier ones (and any lapsed) stop working."""
        await self._ensure_indexes()
        now = time.time()
        await self._resets.delete_many(
            {"$or": [{"user_id": user["_id"]}, {"expires_at": {"$lte": now}}]}
        )
        token = secrets.token_urlsafe(32)
        await self._resets.insert_one(
            {
                "_id": token_digest(token),
                "user_id": user["_id"],
                "workspace_id": user["workspace_id"],
                "created_at": now,
                "expires_at": now + self._ttl_s,
            }
        )
        return token

    async def redeem(self, token: str) -> Document:
        """The reset's document (its ``workspace_id`` and ``user_id``), once; ResetTokenInvalid
        if the token is unknown, lapsed, already used or being used by a concurrent call."""
        digest = token_digest(token)
        found = await self._resets.find_one({"_id": digest})
        if found is None or found["expires_at"] <= time.time():
            raise ResetTokenInvalid()
        claimed = await self._redis.set(
            f"password_reset:spent:{digest}", b"1", nx=True, ex=self._ttl_s
        )
        if not claimed:
            raise ResetTokenInvalid()
        await self.cancel(found["user_id"])
        return found

    async def cancel(self, user_id: str) -> None:
        """Every outstanding token of ``user_id`` stops working (its password was just set)."""
        await self._resets.delete_many({"user_id": user_id})
