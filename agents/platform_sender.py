"""The platform sender: every channel's outbound messages, through one send path.

platform.outbound → the platform's send API (through the channel's adapter),
conversation.events (``delivery.failed``), platform.outbound.dlq. Key: conversation id.
Side effects: the send ledger, parked sends and the channel's status in Redis; a message that
fails for good is marked ``failed`` in MongoDB.

Conversations are sent side by side and each in order (``agents.runtime.keyed``). Text over the
platform's limit is split, and each piece goes through ``agents.runtime.sends``: paced per chat
and per bot, claimed in the send ledger so that no piece is sent twice, a 429 waited out in its
own lane. What fails for good (a user who blocked the bot, a chat that does not exist, retries
used up, a send left in doubt by a stopped worker) is dead-lettered and announced to operators
as ``delivery.failed`` with the platform's reason. An API channel's failed send is parked
(``core.stores.parked_sends``) with the rest of its conversation behind it, and tried again with
exponential backoff until ``api_webhook_retry_horizon_s`` after the message was made, by
whichever worker runs: the schedule lives in Redis, so it survives restarts, and one tenant's
receiver that is away holds none of the worker's lanes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.failures import GaveUp, dead_letter_value, with_retries
from agents.runtime.keyed import run_keyed
from agents.runtime.sends import STAGE, Backoff, Park, PieceSender, Uncertain
from core.channels.base import ChannelAccount, OutboundText, split_text
from core.clients.database import database
from core.errors import SwitchboardError, ValidationFailed
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import ACTIVE, ChannelStore, RecentChannels, account_of
from core.stores.parked_sends import ParkedSends
from core.stores.send_ledger import SendLedger
from streams.app import app
from streams.contract import API_CHANNEL, PLATFORM_OUTBOUND, REDRIVEN_HEADER
from streams.faust_fixes import skips
from streams.records import PlatformSend, UndecodableRecord, decode
from streams.topics import platform_outbound

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
#: Parked conversations sent at once by one worker, and how long it holds one it took.
PARKED_AT_ONCE = 16
PARKED_LEASE_S = 120.0
#: Backoff between attempts of a parked send: from a second, doubling, at most half an hour.
PARKED_BACKOFF = Backoff(first_s=1.0, max_s=1800.0)

FOR_GOOD = (GaveUp, UndecodableRecord, SwitchboardError, Uncertain)


@dataclass
class PlatformSender:
    deps: PipelineDeps
    pieces: PieceSender = field(init=False)

    def __post_init__(self) -> None:
        redis = self.deps.redis
        self.status = ChannelStatus(redis)
        self.pieces = PieceSender(SendLedger(redis), self.status)
        self.parked = ParkedSends(redis)
        self.channels = ChannelStore(database(self.deps.mongo, self.deps.settings))
        self.recent_channels = RecentChannels(self.channels)

    async def handle(self, event: Any) -> None:
        """One record from the topic, start to end: nothing escapes (``agents.runtime.keyed``)."""
        raw: bytes = event.message.value
        try:
            record = decode(raw)
            if not isinstance(record, PlatformSend):
                raise ValidationFailed(f"{type(record).__name__} does not belong on this topic")
            if record.channel == API_CHANNEL and await self._waiting(record):
                await self._park(record, raw, first=True)  # behind its conversation's queue
                return
            await self.send(record, redriven=_redriven(event))
        except Park as park:
            await self._park(record, raw, first=True, park=park)
        except FOR_GOOD as error:
            await self._failed(event.message.partition, event.message.offset, raw, error)

    async def send(self, record: PlatformSend, *, redriven: bool = False) -> None:
        """Every piece of ``record``'s text, in order; each is sent once whatever repeats."""

        async def reload() -> ChannelAccount | None:  # after a failure: as stored now
            return await with_retries(lambda: self._account(record, fresh=True), f"{STAGE}")

        account = await with_retries(lambda: self._account(record), f"{STAGE}: channel")
        if account is None:
            return  # an API conversation whose application has no webhook: stored, not sent
        adapter = self.deps.channel_adapters.adapter(account.type)
        pieces = split_text(record.text, adapter.text_limit)
        for index, text in enumerate(pieces):
            piece = OutboundText(
                message_id=record.message_id
                if len(pieces) == 1
                else f"{record.message_id}#{index}",
                chat_id=record.chat_id,
                text=text,
                in_reply_to=record.in_reply_to,
                conversation_id=record.conversation_id,
                sender_role=record.sender_role,
            )
            await self.pieces.send(adapter, account, piece, reload, redriven=redriven)
        await with_retries(lambda: self._record_sent(record), f"{STAGE}: bookkeeping")

    async def drain_parked(self) -> None:
        """Send the parked conversations that are due, while the worker runs."""
        slots = asyncio.Semaphore(PARKED_AT_ONCE)

        async def run(conversation_id: str) -> None:
            async with slots:
                try:
                    await self._run_queue(conversation_id)
                except Exception as error:  # its lease lapses and another round takes it
                    log.warning("%s: parked %s: %r", STAGE, conversation_id, error)

        while True:
            try:
                due = await self.parked.take_due(PARKED_LEASE_S, limit=PARKED_AT_ONCE)
            except Exception as error:  # Redis away: the schedule waits for it
                log.warning("%s: parked sends unreadable: %r", STAGE, error)
                due = []
            if due:
                await asyncio.gather(*(run(conversation_id) for conversation_id in due))
            else:
                await asyncio.sleep(0.5)

    async def _run_queue(self, conversation_id: str) -> None:
        """Send a parked conversation's records in order until one fails again (rescheduled)
        or none is left."""
        while (raw := await self.parked.head(conversation_id)) is not None:
            record = decode(raw)
            assert isinstance(record, PlatformSend)  # it was one when it was parked
            try:
                await self.send(record)
            except Park as park:
                attempts = await self.parked.attempts(conversation_id) + 1
                horizon = self.deps.settings.api_webhook_retry_horizon_s
                if time.time() - (record.created_at or time.time()) <= horizon:
                    await self._park(record, raw, first=False, attempts=attempts, park=park)
                    return
                await self._failed(-1, -1, raw, GaveUp(park.failure, attempts))
            except FOR_GOOD as error:
                await self._failed(-1, -1, raw, error)
            await self.parked.done(conversation_id)

    async def _waiting(self, record: PlatformSend) -> bool:
        return await with_retries(
            lambda: self.parked.waiting(record.conversation_id), f"{STAGE}: parked"
        )

    async def _park(
        self,
        record: PlatformSend,
        raw: bytes,
        *,
        first: bool,
        attempts: int = 1,
        park: Park | None = None,
    ) -> None:
        retry_after = park.failure.retry_after_s if park is not None else None
        due_at = time.time() + (retry_after or PARKED_BACKOFF.delay(attempts))
        if first:
            await with_retries(
                lambda: self.parked.park(record.conversation_id, raw, due_at), f"{STAGE}: park"
            )
            if park is not None:  # it failed (rather than queued behind others): count it
                await self.parked.retry_at(record.conversation_id, due_at, attempts)
        else:
            await self.parked.retry_at(record.conversation_id, due_at, attempts)
        log.info("%s: %s parked (attempt %d)", STAGE, record.message_id, attempts)

    async def _account(self, record: PlatformSend, *, fresh: bool = False) -> ChannelAccount | None:
        reader = self.channels if fresh else self.recent_channels
        document = await reader.by_id(record.channel_id)
        if record.channel == API_CHANNEL and (document is None or document["status"] != ACTIVE):
            return None
        if (
            document is None
            or document.get("workspace_id") != record.workspace_id
            or document.get("type") != record.channel
        ):
            raise ValidationFailed(f"{record.channel} channel {record.channel_id!r} does not exist")
        if document.get("status") != ACTIVE:
            what = f"{record.channel} channel {record.channel_id!r}"
            raise ValidationFailed(f"{what} is not connected")
        return account_of(document, self.deps.secrets)

    async def _record_sent(self, record: PlatformSend) -> None:
        # The channel's count only: a write to the message's document per send would cost a
        # FerretDB scan of the messages collection (45 ms at 10,000 documents, measured), where
        # the ledger already says it was sent. A failure, which is rare, is written there.
        await self.status.sent(record.channel_id)

    async def _failed(self, partition: int, offset: int, raw: bytes, error: BaseException) -> None:
        attempts = error.attempts if isinstance(error, GaveUp) else 1
        cause = error.error if isinstance(error, GaveUp) else error
        key = ""
        try:
            record = decode(raw)
            key = record.conversation_id
            if isinstance(record, PlatformSend) and record.channel_id:
                await self.status.failed(record.channel_id, str(cause))
                await self.deps.store.set_message_status(record.message_id, "failed")
        except Exception as bookkeeping:  # the dead letter below matters more
            log.warning("%s: could not record the failure: %r", STAGE, bookkeeping)
        await dead_letter_value(
            PLATFORM_OUTBOUND, partition, offset, key, raw, STAGE, cause, attempts
        )


def _redriven(event: Any) -> bool:
    headers = getattr(event.message, "headers", None) or []
    items = headers.items() if isinstance(headers, dict) else headers
    return any(name == REDRIVEN_HEADER for name, _ in items)


def _background(*jobs: Callable[[], Coroutine[Any, Any, None]]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(job()) for job in jobs]


@app.agent(platform_outbound)
async def platform_sender(stream: Any) -> None:
    deps = await deps_of(app)
    manual = stream.noack()
    if not deps.settings.platform_sender_enabled:
        async for event in manual.events():  # something else reads the topic: keep up
            await skips.ack(manual, event)
        return
    sender = PlatformSender(deps)
    # The heartbeat beats at once, then every few seconds: this worker's claims are live.
    tasks = _background(sender.pieces.heartbeat, sender.drain_parked)
    try:
        await run_keyed(manual, sender.handle, STAGE, app.consumer, MAX_IN_FLIGHT)
    finally:
        for task in tasks:
            task.cancel()
