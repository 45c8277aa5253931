"""Model tokens used, per turn: what each application and conversation spends.

One document per answered request (its id is the ``_id``), so a repeated turn is counted once;
totals come from aggregating by workspace, application or conversation.
"""

from __future__ import annotations

import contextlib
import time

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.database import Document


class UsageLedger:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._usage = db["llm_usage"]

    async def ensure_indexes(self) -> None:
        await self._usage.create_index(
            [("workspace_id", ASCENDING), ("application_id", ASCENDING), ("at", ASCENDING)],
            name="application_time",
        )

    async def record(
        self,
        request_id: str,
        *,
        workspace_id: str,
        application_id: str,
        conversation_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        with contextlib.suppress(DuplicateKeyError):  # the same turn, repeated after a crash
            await self._usage.insert_one(
                {
                    "_id": request_id,
                    "workspace_id": workspace_id,
                    "application_id": application_id,
                    "conversation_id": conversation_id,
                    "model": model,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "at": time.time(),
                }
            )
