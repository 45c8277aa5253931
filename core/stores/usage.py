"""Model tokens used, per turn: what each application and conversation spends.

One document per answered request (its id is the ``_id``), so a repeated turn is counted once;
totals come from aggregating by workspace, application or conversation.

Writes are grouped: every turn that records usage while a write is under way joins the next
one, an ``insert_many`` of all of them, and each caller returns once its own document is
stored. On FerretDB (SQLite) every write is a transaction of its own, so one insert per turn
capped a worker at about a hundred turns a second; grouped, the cap goes away and the promise
is the same: ``record`` returns when the document is in the database.
"""

from __future__ import annotations

import asyncio
import time

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from core.clients.database import Document
from core.stores.conversation_store import insert_new

#: The most documents one grouped write carries.
MAX_GROUP = 500


class UsageLedger:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._usage = db["llm_usage"]
        self._queue: list[tuple[Document, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

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
        """Store one turn's usage; a turn already recorded (repeated after a crash) is kept."""
        document = {
            "_id": request_id,
            "workspace_id": workspace_id,
            "application_id": application_id,
            "conversation_id": conversation_id,
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "at": time.time(),
        }
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((document, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        await stored

    async def _write_groups(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                await insert_new(self._usage, [document for document, _ in group])
            except Exception as error:  # each caller decides what to do (retry, dead-letter)
                for _, stored in group:
                    if not stored.done():
                        stored.set_exception(error)
            else:
                for _, stored in group:
                    if not stored.done():
                        stored.set_result(None)
