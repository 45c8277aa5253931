"""Sessions: one refresh-token family per sign-in, rotated on every refresh.

The family document holds the id (``jti``) of its one current refresh token. A refresh that
presents it claims it in Redis and swaps in the next one, so of two concurrent refreshes only
one wins (FerretDB has no transactions, and its conditional updates are not atomic either).
A refresh that presents an older, spent token means a copy of it is in someone else's hands:
the whole family is revoked, and a Redis key marks it so that its access tokens (stateless,
checked by ``web.auth.principal``) stop at once too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from core.clients.database import Document
from core.errors import Unauthorized
from core.ids import new_id
from core.security.tokens import RefreshClaims

#: How long a spent refresh token's claim is kept; a refresh finishes in far less.
CLAIM_TTL_S = 300


class RefreshReused(Unauthorized):
    def __init__(self) -> None:
        super().__init__("this refresh token was already used; the session is ended, sign in again")


class SessionStore:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        redis: Redis,
        *,
        revoked_key: Callable[[str], str],
        access_ttl_s: int,
    ) -> None:
        self._sessions = db["sessions"]
        self._redis = redis
        self._revoked_key = revoked_key
        self._access_ttl_s = access_ttl_s

    @staticmethod
    def new_family_id() -> str:
        return new_id("ses")

    async def start(self, workspace_id: str, refresh: RefreshClaims) -> None:
        """Store a new family whose current token is ``refresh`` (made under its family id)."""
        await self._sessions.insert_one(
            {
                "_id": refresh.family_id,
                "workspace_id": workspace_id,
                "user_id": refresh.user_id,
                "current": refresh.token_id,
                "revoked": False,
                "created_at": time.time(),
                "expires": refresh.expires_at,
            }
        )

    async def rotate(self, presented: RefreshClaims, successor: RefreshClaims) -> Document:
        """Make ``successor`` the family's current token if ``presented`` is; the family.

        Unauthorized if the family is unknown, revoked or expired; RefreshReused (after revoking
        the family) if ``presented`` was already spent, or is being spent by a concurrent refresh.
        """
        family = await self._sessions.find_one(
            {"_id": presented.family_id, "user_id": presented.user_id}
        )
        if family is None or family["revoked"]:
            raise Unauthorized("this session has ended; sign in again")
        if family["current"] != presented.token_id or not await self._claim(presented):
            await self.revoke(family["_id"], family["workspace_id"])
            raise RefreshReused()
        if family["expires"] <= time.time():
            raise Unauthorized("this session has expired; sign in again")
        await self._sessions.update_one(
            {"_id": family["_id"], "current": presented.token_id},
            {"$set": {"current": successor.token_id, "expires": successor.expires_at}},
        )
        return family

    async def _claim(self, presented: RefreshClaims) -> bool:
        """Whether this call is the one that spends ``presented``.

        FerretDB (1.x) evaluates an update's filter and writes in separate steps, so two
        concurrent conditional updates can both match; Redis ``SET NX`` cannot both succeed.
        The claim is needed only until the family's ``current`` moves on, hence the short TTL.
        """
        claimed = await self._redis.set(
            f"session:spent:{presented.token_id}", presented.family_id, nx=True, ex=CLAIM_TTL_S
        )
        return bool(claimed)

    async def revoke(self, family_id: str, workspace_id: str) -> None:
        """End one family: its refresh tokens and (through Redis) its access tokens."""
        await self._mark_revoked([family_id])
        await self._sessions.update_one(
            {"_id": family_id, "workspace_id": workspace_id}, self._revoked_update()
        )

    async def revoke_user(self, workspace_id: str, user_id: str) -> None:
        """End every live session of a user (removed, or given another role)."""
        scope = {"workspace_id": workspace_id, "user_id": user_id, "revoked": False}
        families = [doc["_id"] async for doc in self._sessions.find(scope, {"_id": 1})]
        if not families:
            return
        await self._mark_revoked(families)
        await self._sessions.update_many(
            {**scope, "_id": {"$in": families}}, self._revoked_update()
        )

    async def _mark_revoked(self, family_ids: list[str]) -> None:
        # First, so that a failure between the two writes errs on the side of signed out.
        async with self._redis.pipeline(transaction=False) as pipe:
            for family_id in family_ids:
                pipe.set(self._revoked_key(family_id), b"1", ex=self._access_ttl_s)
            await pipe.execute()

    @staticmethod
    def _revoked_update() -> dict[str, Any]:
        return {"$set": {"revoked": True, "revoked_at": time.time()}}
