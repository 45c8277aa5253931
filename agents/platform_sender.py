"""The platform sender: every channel's outbound messages, through one send path.

platform.outbound → the platform's send API (through the channel's adapter),
conversation.events (``delivery.failed``), platform.outbound.dlq. Key: conversation id.
Side effects: the send ledger in Redis (``core.stores.send_ledger``), the channel's status, the
message's status in MongoDB.

Conversations are sent side by side and each in order (``agents.runtime.keyed``), so a chat the
platform asks to slow down (429) waits in its own lane. Text over the platform's limit is split;
each piece is claimed in the ledger before it leaves, so a redelivered record never sends a piece
twice. What fails for good (a user who blocked the bot, a chat that does not exist, a refused
webhook URL, or the retries used up) is dead-lettered and announced to operators with the
platform's reason. A transient failure is retried with jittered backoff; the API channel's
webhooks are retried for ``api_webhook_retry_horizon_s`` after the message was made, counted
from the record's own time, so the schedule survives restarts: the record stays unacked while
it waits and is delivered again to whichever worker runs next.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.failures import GaveUp, dead_letter, with_retries
from agents.runtime.keyed import run_keyed
from core.channels.base import ChannelAccount, ChannelAdapter, OutboundText, SendFailed, split_text
from core.channels.pacing import Pacer
from core.clients.database import database
from core.errors import SwitchboardError, ValidationFailed
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import ACTIVE, ChannelStore, account_of
from core.stores.send_ledger import Claim, SendLedger
from streams.app import app
from streams.contract import API_CHANNEL, REDRIVEN_HEADER
from streams.records import PlatformSend, UndecodableRecord, decode
from streams.topics import platform_outbound

log = logging.getLogger(__name__)

STAGE = "platform-sender"
MAX_IN_FLIGHT = 256


class Uncertain(Exception):
    """A piece was claimed by a worker that stopped before saying whether the platform took it."""


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts of a transient failure: jittered, doubling, capped."""

    first_s: float = 0.5
    max_s: float = 60.0
    #: Attempts of a platform send before it is dead-lettered (the API channel: by time).
    attempts: int = 8
    #: 429s honoured for one piece before it is dead-lettered: a platform that keeps asking to
    #: wait for longer than this has a problem an operator should see.
    rate_limited: int = 50

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.first_s * 2 ** (attempt - 1))
        return float(base * random.uniform(0.5, 1.0))  # noqa: S311 (spreads retries)


@dataclass
class PlatformSender:
    deps: PipelineDeps
    pacer: Pacer = field(default_factory=Pacer)
    backoff: Backoff = field(default_factory=Backoff)
    owner: str = field(default_factory=lambda: f"sender-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.ledger = SendLedger(self.deps.redis)
        self.status = ChannelStatus(self.deps.redis)
        self.channels = ChannelStore(database(self.deps.mongo, self.deps.settings))

    async def handle(self, event: Any) -> None:
        """One record, start to end: nothing escapes (``agents.runtime.keyed``)."""
        try:
            record = decode(event.message.value)
            if not isinstance(record, PlatformSend):
                raise ValidationFailed(f"{type(record).__name__} does not belong on this topic")
            await self.send(record, redriven=_redriven(event))
        except GaveUp as failure:
            await self._failed(event, failure.error, failure.attempts)
        except (UndecodableRecord, SwitchboardError, Uncertain) as error:
            # A poison record, a channel that is gone or whose credentials the adapter refuses,
            # or a piece a stopped worker left uncertain: trying again would not help.
            await self._failed(event, error, 1)

    async def send(self, record: PlatformSend, *, redriven: bool = False) -> None:
        account = await with_retries(lambda: self._account(record), f"{STAGE}: channel")
        if account is None:
            return  # an API conversation whose application has no webhook: stored, not sent
        adapter = self.deps.channel_adapters.adapter(account.type)
        pieces = split_text(record.text, adapter.text_limit)
        for index, text in enumerate(pieces):
            piece_id = record.message_id if len(pieces) == 1 else f"{record.message_id}#{index}"
            outbound = OutboundText(
                message_id=piece_id,
                chat_id=record.chat_id,
                text=text,
                conversation_id=record.conversation_id,
                sender_role=record.sender_role,
            )
            await self._send_piece(adapter, account, record, outbound, redriven)
        await with_retries(lambda: self._record_sent(record), f"{STAGE}: bookkeeping")

    async def _account(self, record: PlatformSend) -> ChannelAccount | None:
        document = await self.channels.by_id(record.channel_id)
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

    async def _send_piece(
        self,
        adapter: ChannelAdapter,
        account: ChannelAccount,
        record: PlatformSend,
        text: OutboundText,
        redriven: bool,
    ) -> None:
        attempt = rate_limited = 0
        while True:
            # Paced before the claim: a claim is held only while its request is on its way.
            await self.pacer.wait(account.channel_id, text.chat_id, adapter.rate_limits)
            claim = await with_retries(
                lambda: self.ledger.claim(text.message_id, self.owner, redriven=redriven),
                f"{STAGE}: claim",
            )
            if claim is Claim.SENT:
                return
            if claim is Claim.BUSY:  # another worker holds it (a rebalance): let it finish
                await asyncio.sleep(1.0)
                continue
            if claim is Claim.UNCERTAIN:
                await self.ledger.uncertain(text.message_id)
                raise Uncertain(
                    "delivery uncertain: a worker stopped while sending this message, so it is "
                    "not sent again by itself (redrive it to send it anyway)"
                )
            try:
                await adapter.send(account, text)
            except SendFailed as failure:
                await self.ledger.release(text.message_id, self.owner)
                attempt, rate_limited = await self._after_failure(
                    failure, adapter, account, record, text, attempt, rate_limited
                )
                continue
            await with_retries(lambda: self.ledger.sent(text.message_id), f"{STAGE}: mark")
            return

    async def _after_failure(
        self,
        failure: SendFailed,
        adapter: ChannelAdapter,
        account: ChannelAccount,
        record: PlatformSend,
        text: OutboundText,
        attempt: int,
        rate_limited: int,
    ) -> tuple[int, int]:
        """Wait as the failure asks, or raise it when it may not be tried again."""
        await self.status.failed(account.channel_id, failure.reason)
        if failure.permanent:
            raise GaveUp(failure, attempt + 1) from failure
        if failure.retry_after_s is not None:
            rate_limited += 1
            if rate_limited > self.backoff.rate_limited:
                raise GaveUp(failure, attempt + rate_limited) from failure
            limits = adapter.rate_limits
            self.pacer.hold(account.channel_id, text.chat_id, failure.retry_after_s, limits)
            log.info("%s: %s asked to wait %.1fs", STAGE, account.type, failure.retry_after_s)
            return attempt, rate_limited
        attempt += 1
        if account.type == API_CHANNEL:
            horizon = self.deps.settings.api_webhook_retry_horizon_s
            if time.time() - (record.created_at or time.time()) > horizon:
                raise GaveUp(failure, attempt) from failure
        elif attempt >= self.backoff.attempts:
            raise GaveUp(failure, attempt) from failure
        delay = self.backoff.delay(attempt)
        log.warning("%s: %s (attempt %d), retrying in %.1fs", STAGE, failure.reason, attempt, delay)
        await asyncio.sleep(delay)
        return attempt, rate_limited

    async def heartbeat(self) -> None:
        """Keep this worker's claims in progress (``core.stores.send_ledger``) while it runs."""
        while True:
            try:
                await self.ledger.heartbeat(self.owner)
            except Exception as error:  # Redis away: the claims wait for it like every write
                log.warning("%s: heartbeat failed: %r", STAGE, error)
            await asyncio.sleep(self.ledger.heartbeat_ttl_s / 3)

    async def _record_sent(self, record: PlatformSend) -> None:
        await self.status.sent(record.channel_id)
        await self.deps.store.set_message_status(record.message_id, "sent")

    async def _failed(self, event: Any, error: BaseException, attempts: int) -> None:
        try:
            record = decode(event.message.value)
            if isinstance(record, PlatformSend) and record.channel_id:
                await self.status.failed(record.channel_id, str(error))
                await self.deps.store.set_message_status(record.message_id, "failed")
        except Exception as bookkeeping:  # the dead letter below matters more
            log.warning("%s: could not record the failure: %r", STAGE, bookkeeping)
        await dead_letter(event, STAGE, error, attempts)


def _redriven(event: Any) -> bool:
    headers = getattr(event.message, "headers", None) or []
    items = headers.items() if isinstance(headers, dict) else headers
    return any(name == REDRIVEN_HEADER for name, _ in items)


@app.agent(platform_outbound)
async def platform_sender(stream: Any) -> None:
    sender = PlatformSender(await deps_of(app))
    beating = asyncio.create_task(sender.heartbeat())  # beats at once, then every few seconds
    try:
        await run_keyed(stream.noack(), sender.handle, STAGE, app.consumer, MAX_IN_FLIGHT)
    finally:
        beating.cancel()
