"""Platform webhooks taken in: verified, deduplicated, produced to Kafka, then answered.

The order is what makes a 200 safe to give. The raw bytes are verified before anything is
parsed; the platform's delivery id is claimed in Redis before anything is produced; every
message is produced and acked by the broker before the claim is marked done and the platform
answered. A platform retries whatever is not a 2xx (Telegram forever), so a request that is
refused or fails stores nothing, and one that was taken answers 200 once more when redelivered
without being produced twice. Calls the adapter wants made after the ack (Telegram's
answerCallbackQuery) run in background tasks that do not hold up the answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.channels.base import (
    ChannelAccount,
    ChannelAdapter,
    MalformedWebhook,
    NormalizedMessage,
    PlatformCall,
    SendFailed,
    WebhookRefused,
)
from core.channels.registry import ChannelRegistry, UnknownChannelType
from core.clients.database import Document
from core.clients.producer import LazyProducer
from core.errors import NotFound, SwitchboardError
from core.security.secrets import SecretBox, SecretUnreadable
from core.stores.channel_status import ChannelStatus
from core.stores.channel_store import ACTIVE, ChannelStore, RecentChannels, account_of
from streams.contract import MESSAGES_INBOUND
from streams.inbound import Origin, inbound_record
from streams.records import encode

log = logging.getLogger(__name__)

#: Longer than any channel id; a longer path segment is not looked up.
MAX_CHANNEL_ID = 100
#: How long a claim holds a delivery while its records are produced: longer than the
#: producer's ack timeout, short enough that a claim left by a dead process soon frees the
#: platform's next retry.
CLAIM_TTL_S = 60
#: How long app cleanup waits for after-ack calls before cancelling them.
CALLS_GRACE_S = 5.0
DONE = b"done"


class WebhookNotFound(NotFound):
    """An unknown channel type, an unknown channel, or a channel of another type: one answer
    for all, so a prober learns nothing about other tenants' channels."""

    def __init__(self) -> None:
        super().__init__("no such webhook")


class BodyTooLarge(SwitchboardError):
    status = 413
    code = "body_too_large"


class Outcome(enum.Enum):
    TAKEN = "taken"  # produced (or ignored) and marked done
    DUPLICATE = "duplicate"  # taken by an earlier request
    DROPPED = "dropped"  # the channel is not active: answered 200, nothing taken
    IN_PROGRESS = "in_progress"  # another request holds the delivery's claim


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused past the app's ``client_max_size`` whether or not the client said
    its length (a chunked body is cut off as soon as it passes the limit)."""
    limit = request.client_max_size
    refused = BodyTooLarge(f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise refused
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise refused from None


def delivery_key(channel_id: str, delivery_id: str) -> str:
    return f"webhook:delivery:{channel_id}:{delivery_id}"


@dataclass(frozen=True)
class Claim:
    key: str
    token: bytes


class Deliveries:
    """Which platform deliveries were taken, in Redis: claimed (``SET NX``, ``CLAIM_TTL_S``)
    before producing, then done for ``done_ttl_s`` once Kafka acked every record."""

    def __init__(self, redis: Redis, done_ttl_s: int, *, claim_ttl_s: int = CLAIM_TTL_S) -> None:
        self._redis = redis
        self._done_ttl_s = done_ttl_s
        self._claim_ttl_s = claim_ttl_s

    async def claim(self, channel_id: str, delivery_id: str) -> Claim | Outcome:
        """This request's claim on the delivery, or why there is none (DUPLICATE, IN_PROGRESS)."""
        claim = Claim(delivery_key(channel_id, delivery_id), f"taking:{uuid.uuid4().hex}".encode())
        if await self._redis.set(claim.key, claim.token, nx=True, ex=self._claim_ttl_s):
            return claim
        held = await self._redis.get(claim.key)
        # None: the holder released it a moment ago, and may still be failing; the retry decides.
        return Outcome.DUPLICATE if held == DONE else Outcome.IN_PROGRESS

    async def done(self, claim: Claim) -> None:
        await self._redis.set(claim.key, DONE, ex=self._done_ttl_s)

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose records did not all reach Kafka, so the platform's retry is
        taken; only this request's own claim (one that expired may be another's by now)."""
        if await self._redis.get(claim.key) == claim.token:
            await self._redis.delete(claim.key)


class PlatformCalls:
    """After-ack calls in background tasks, kept so app cleanup can finish or cancel them."""

    def __init__(self, *, grace_s: float = CALLS_GRACE_S) -> None:
        self._grace_s = grace_s
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, adapter: ChannelAdapter, account: ChannelAccount, calls: tuple[PlatformCall, ...]
    ) -> None:
        if not calls:
            return
        task = asyncio.create_task(_make_calls(adapter, account, calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self._grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _make_calls(
    adapter: ChannelAdapter, account: ChannelAccount, calls: tuple[PlatformCall, ...]
) -> None:
    """Each call once; a failure is logged (without its URL, which holds a token) and left:
    the records are already taken, and the platform copes with an unanswered call."""
    for call in calls:
        try:
            await adapter.call(account, call)
        except SendFailed as failed:
            reason = failed.reason
        except SwitchboardError as refused:
            reason = refused.message
        except Exception as error:
            reason = type(error).__name__
        else:
            continue
        log.warning("%s for channel %s failed: %s", call.method, account.channel_id, reason)


class WebhookIngress:
    """The steps of one webhook request; ``take`` is the one entry point."""

    def __init__(
        self,
        *,
        channels: ChannelStore | RecentChannels,
        registry: ChannelRegistry,
        box: SecretBox,
        producer: LazyProducer,
        deliveries: Deliveries,
        status: ChannelStatus,
        calls: PlatformCalls,
    ) -> None:
        self._channels = channels
        self._registry = registry
        self._box = box
        self._producer = producer
        self._deliveries = deliveries
        self._status = status
        self._calls = calls

    async def take(
        self, channel_type: str, channel_id: str, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        """Take one request's raw ``body``; raises what the platform is answered 4xx or 503."""
        adapter, document = await self._channel(channel_type, channel_id)
        account = self._account(document)
        try:
            adapter.verify(account, headers, body)
        except WebhookRefused as refused:
            await self._note(self._status.webhook_refused(account.channel_id, refused.message))
            raise
        state = str(document.get("status") or "not active")
        if state != ACTIVE:
            # Answered 200 all the same: the platform would retry anything else forever.
            reason = f"the channel is {state}"
            await self._note(self._status.webhook_dropped(account.channel_id, reason))
            return Outcome.DROPPED
        try:
            parsed = adapter.parse(account, body)
        except MalformedWebhook as malformed:
            await self._note(self._status.webhook_refused(account.channel_id, malformed.message))
            raise
        await self._producer.ready()  # Kafka down: refused before anything is claimed
        claim = await self._deliveries.claim(account.channel_id, parsed.delivery_id)
        if isinstance(claim, Outcome):
            return claim
        await self._produce(account, parsed.messages, claim)
        if parsed.ignored:
            log.info("channel %s: delivery taken, nothing in it: %s", channel_id, parsed.ignored)
        self._calls.start(adapter, account, parsed.after_ack)
        await self._note(self._status.webhook_received(account.channel_id, len(parsed.messages)))
        return Outcome.TAKEN

    async def close(self) -> None:
        await self._calls.close()

    async def _channel(self, channel_type: str, channel_id: str) -> tuple[ChannelAdapter, Document]:
        try:
            adapter = self._registry.adapter(channel_type)
        except UnknownChannelType:
            raise WebhookNotFound() from None
        if not channel_id or len(channel_id) > MAX_CHANNEL_ID:
            raise WebhookNotFound()
        document = await self._channels.by_id(channel_id)
        if document is None or document.get("type") != channel_type:
            raise WebhookNotFound()
        return adapter, document

    def _account(self, document: Document) -> ChannelAccount:
        try:
            return account_of(document, self._box)
        except SecretUnreadable:
            # The deployment's key changed: nothing can be verified until the channel is
            # connected again. The caller learns only that it was not verified.
            log.error("channel %s: its secrets cannot be opened with this key", document["_id"])
            raise WebhookRefused("the request could not be verified") from None

    async def _produce(
        self, account: ChannelAccount, messages: tuple[NormalizedMessage, ...], claim: Claim
    ) -> None:
        """Every message in order, each acked by the broker; then the delivery is done. If one
        fails, the claim goes, so the platform's retry produces them all again (the same
        deterministic ids, which every sink applies once)."""
        origin = Origin(
            account.workspace_id, account.application_id, account.type, account.channel_id
        )
        trace_id = uuid.uuid4().hex
        try:
            for message in messages:
                record = inbound_record(origin, message, trace_id=trace_id)
                await self._producer.send(MESSAGES_INBOUND, record.conversation_id, encode(record))
        except BaseException:
            await self._deliveries.release(claim)
            raise
        await self._deliveries.done(claim)

    async def _note(self, write: Awaitable[None]) -> None:
        """Write the channel's status for operators; failing to does not fail the delivery."""
        try:
            await write
        except (RedisError, ConnectionError, TimeoutError) as error:
            log.warning("channel status not recorded: %s", type(error).__name__)
