"""One piece of text to one platform, sent once: paced, claimed in the send ledger as its
request leaves, and tried again as the failure allows.

The platform sender (``agents.platform_sender``) hands each piece here. A piece is sent at most
once (``core.stores.send_ledger``): one sent before is skipped, one another live worker is
sending is waited for, and one a stopped worker left in doubt is not sent again unless the
receiver drops repeats by id or an operator re-drove it. A 429 is waited out in the piece's
conversation lane, the chat held for as long as the platform asked. Other transient failures
are retried here with jittered backoff, a bounded number of times; where the channel's receiver
may be away for long (``ChannelAdapter.durable_retries``) the first one raises ``Park`` instead,
and the sender parks the record on its durable schedule.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.runtime.failures import GaveUp, with_retries
from core.channels.base import ChannelAccount, ChannelAdapter, OutboundText, SendFailed
from core.channels.pacing import Pacer
from core.stores.channel_status import ChannelStatus
from core.stores.send_ledger import Claim, SendLedger

log = logging.getLogger(__name__)

STAGE = "platform-sender"


class NotClaimed(Exception):
    """The ledger did not give this worker the piece: sent already, held, or in doubt."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(claim.value)
        self.claim = claim


class Uncertain(Exception):
    """A piece was claimed by a worker that stopped before saying whether the platform took it."""


class Park(Exception):
    """A transient failure on a channel with durable retries: park the record and move on."""

    def __init__(self, failure: SendFailed) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts of a transient failure: jittered, doubling, capped."""

    first_s: float = 0.5
    max_s: float = 60.0
    #: Attempts of a send before it is dead-lettered (parked sends go by time instead).
    attempts: int = 8
    #: 429s honoured for one piece before it is dead-lettered: a platform that keeps asking to
    #: wait for longer than this has a problem an operator should see.
    rate_limited: int = 50

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.first_s * 2 ** (attempt - 1))
        return float(base * random.uniform(0.5, 1.0))  # noqa: S311 (spreads retries)


#: Reads the channel again after a failure: a rotated secret or a new URL applies at once, and
#: a disconnect stops the retries (None: nothing to send any more).
Reload = Callable[[], Awaitable[ChannelAccount | None]]


@dataclass
class PieceSender:
    ledger: SendLedger
    status: ChannelStatus
    pacer: Pacer = field(default_factory=Pacer)
    backoff: Backoff = field(default_factory=Backoff)
    owner: str = field(default_factory=lambda: f"sender-{uuid.uuid4().hex}")

    async def send(
        self,
        adapter: ChannelAdapter,
        account: ChannelAccount,
        text: OutboundText,
        reload: Reload,
        *,
        redriven: bool = False,
    ) -> None:
        """Send ``text`` once; raise ``GaveUp``, ``Uncertain`` or ``Park`` if it is not sent."""
        attempt = rate_limited = 0
        take_uncertain = redriven or adapter.receiver_drops_repeats
        current: ChannelAccount | None = account
        while current is not None:
            # Paced first: the claim is made by the adapter as its request is about to leave.
            await self.pacer.wait(current.channel_id, text.chat_id, adapter.rate_limits)
            try:
                await self._attempt(adapter, current, text, take_uncertain)
                return
            except NotClaimed as refused:
                if refused.claim is Claim.SENT:
                    return
                if refused.claim is Claim.BUSY:  # another worker holds it (a rebalance)
                    await asyncio.sleep(1.0)
                    continue
                await self.ledger.uncertain(text.message_id)
                raise Uncertain(
                    "delivery uncertain: a worker stopped while sending this message, so it is "
                    "not sent again by itself (redrive it to send it anyway)"
                ) from None
            except SendFailed as failure:
                await self.ledger.release(text.message_id, self.owner)
                await self.status.failed(current.channel_id, failure.reason)
                attempt, rate_limited = await self._wait_or_raise(
                    failure, adapter, current, text, attempt, rate_limited
                )
                current = await reload()

    async def _attempt(
        self,
        adapter: ChannelAdapter,
        account: ChannelAccount,
        text: OutboundText,
        take_uncertain: bool,
    ) -> None:
        # A look first, so a piece sent before (a redelivered record) costs no request at all.
        found = await with_retries(
            lambda: self.ledger.peek(text.message_id, self.owner), f"{STAGE}: peek"
        )
        takeable = found is Claim.UNCERTAIN and take_uncertain
        if found is not None and found is not Claim.MINE and not takeable:
            raise NotClaimed(found)

        async def claim() -> None:
            claimed = await with_retries(
                lambda: self.ledger.claim(
                    text.message_id, self.owner, take_uncertain=take_uncertain
                ),
                f"{STAGE}: claim",
            )
            if claimed is not Claim.MINE:
                raise NotClaimed(claimed)

        await adapter.send(account, text, before_send=claim)
        await with_retries(lambda: self.ledger.sent(text.message_id), f"{STAGE}: mark")

    async def _wait_or_raise(
        self,
        failure: SendFailed,
        adapter: ChannelAdapter,
        account: ChannelAccount,
        text: OutboundText,
        attempt: int,
        rate_limited: int,
    ) -> tuple[int, int]:
        """Wait as the failure asks; raise when it may not be tried again here."""
        if failure.permanent:
            raise GaveUp(failure, attempt + 1) from failure
        if adapter.durable_retries:
            raise Park(failure) from failure
        if failure.retry_after_s is not None:
            rate_limited += 1
            if rate_limited > self.backoff.rate_limited:
                raise GaveUp(failure, attempt + rate_limited) from failure
            limits = adapter.rate_limits
            self.pacer.hold(account.channel_id, text.chat_id, failure.retry_after_s, limits)
            log.info("%s: %s asked to wait %.1fs", STAGE, account.type, failure.retry_after_s)
            return attempt, rate_limited
        attempt += 1
        if attempt >= self.backoff.attempts:
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
