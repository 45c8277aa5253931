"""The small protocol every messaging channel implements, and what its methods exchange.

A channel adapter knows one platform: how to check that a webhook request really came from it
(on the raw bytes and headers, before anything is parsed), how to read the request into
normalized messages and events, how to send one message (split at the platform's limit), and
how to connect and disconnect the platform side (registering the webhook). It knows nothing of
Kafka, MongoDB or tenants' records: the integrations service, the bots service and the platform
sender call it with what they looked up. Rasa's input/output channel pair and Chatwoot's
per-channel services are the models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from core.errors import SwitchboardError


class Credentials(BaseModel):
    """What a tenant gives to connect a channel of one type (each adapter says which fields):
    unknown fields are refused and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True)
class ChannelAccount:
    """One connected channel as an adapter needs it: its ids, opened credentials and settings.

    ``credentials`` and ``webhook_secret`` are opened from their sealed form by the caller and
    live only in memory; ``config`` holds what the platform told us at connect (the bot's id and
    username) and what the tenant set that is not secret (a webhook URL).
    """

    channel_id: str
    type: str
    workspace_id: str
    application_id: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    webhook_secret: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    """A file the platform holds, referenced (never its bytes): fetched later, off the hot path."""

    kind: str  # image, file, audio, video, other
    platform_ref: str  # Telegram's file_id, ...
    mime_type: str = ""
    filename: str = ""
    size_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "platform_ref": self.platform_ref,
            "mime_type": self.mime_type,
            "filename": self.filename,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class NormalizedMessage:
    """A user's message (or postback, or edit) as every channel reports it."""

    chat_id: str  # the platform's conversation with one user (Telegram: the chat id)
    external_id: str  # the platform's id of the message, unique within the chat
    sender_id: str
    text: str
    kind: str = "message"  # message, postback (a button's data), edit (of external_id)
    sender_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    reply_to: str = ""  # the external id of the message this one answers
    sent_at: float = 0.0  # seconds since the epoch, as the platform says


@dataclass(frozen=True)
class PlatformCall:
    """A call an adapter wants made once the webhook's records are safely produced
    (Telegram's answerCallbackQuery, which stops the user's button spinner)."""

    method: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class ParsedWebhook:
    """What one webhook request said: ``delivery_id`` is the platform's own id of the delivery
    (Telegram's update_id), the key a redelivered request is recognised by."""

    delivery_id: str
    messages: tuple[NormalizedMessage, ...] = ()
    after_ack: tuple[PlatformCall, ...] = ()
    #: Why nothing was taken from the request (a group message not addressed to the bot, an
    #: update kind the platform sends but Switchboard does not use), for the log.
    ignored: str = ""


@dataclass(frozen=True)
class OutboundText:
    """One message for a platform: ``message_id`` is Switchboard's, the idempotency key."""

    message_id: str
    chat_id: str
    text: str
    reply_to: str = ""  # the platform's id of a message to answer as a reply
    in_reply_to: str = ""  # Switchboard's id of the user's message this answers
    conversation_id: str = ""
    sender_role: str = "bot"  # bot, operator


@dataclass(frozen=True)
class SendReceipt:
    """What the platform answered a send with: its ids of the messages it made."""

    platform_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectedAccount:
    """What connecting learned: the platform's id and name of the bot, shown to operators."""

    platform_id: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)


class WebhookRefused(SwitchboardError):
    """The request is not the platform's: a missing or wrong secret or signature."""

    status = 401
    code = "webhook_unauthorized"


class MalformedWebhook(SwitchboardError):
    """The request is the platform's but is not a body the adapter can read."""

    status = 400
    code = "malformed_webhook"


class CredentialsRefused(SwitchboardError):
    """The platform refused the credentials a tenant gave (Telegram's getMe answered 401)."""

    status = 422
    code = "credentials_refused"


class SendFailed(Exception):
    """A send the platform did not take.

    ``permanent`` failures (the user blocked the bot, the chat does not exist) are never retried:
    they are dead-lettered and announced to operators with ``reason``. Others are retried, after
    ``retry_after_s`` when the platform said how long to wait (a 429), or with backoff.
    """

    def __init__(
        self, reason: str, *, permanent: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RateLimits:
    """How fast the platform lets one bot send, as it documents them."""

    per_chat_per_s: float
    per_bot_per_s: float


BeforeSend = Callable[[], Awaitable[None]]
CredentialsModel = type[Credentials]


class ChannelAdapter(Protocol):
    """One platform. An adapter holds its own HTTP client (made on first use, closed by
    ``close``) and no per-tenant state: every call names its account."""

    type: str
    #: The longest text one platform message may hold; longer ones are split.
    text_limit: int
    rate_limits: RateLimits
    #: Whether the receiving side drops a repeated message by its id (Standard Webhooks'
    #: webhook-id), so a send in doubt may simply be sent again. Platforms' send APIs do not.
    receiver_drops_repeats: bool
    #: Whether a failed send is parked on the sender's durable schedule (the receiver may be
    #: away for hours) rather than retried in its conversation's lane for a bounded while.
    durable_retries: bool
    #: How a channel of this type is set up, for the bots service: what a tenant gives, ...
    credentials_model: CredentialsModel
    #: ... whether the platform calls ``/webhooks/{type}/{channel id}`` (and so is given it),
    inbound_webhook: bool
    #: ... whether an application has at most one, whose id is the application's,
    one_per_application: bool
    #: ... and whether the webhook secret is the tenant's to keep (it signs what Switchboard
    #: sends), shown once when it is made.
    secret_shown: bool

    def new_secret(self) -> str:
        """A fresh webhook secret, in the form the platform takes."""
        ...

    def account_id(self, credentials: Mapping[str, str]) -> str:
        """The platform account ``credentials`` name, known without calling the platform (a
        Telegram token starts with its bot's id); empty when only ``connect`` can tell. Raise
        ``CredentialsRefused`` for credentials that cannot be right."""
        ...

    def verify(self, account: ChannelAccount, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``WebhookRefused`` unless the raw request is the platform's for ``account``."""
        ...

    def parse(self, account: ChannelAccount, body: bytes) -> ParsedWebhook:
        """The request's messages; raise ``MalformedWebhook`` for a body that cannot be read."""
        ...

    async def send(
        self, account: ChannelAccount, text: OutboundText, before_send: BeforeSend | None = None
    ) -> SendReceipt:
        """Send one piece of text of at most ``text_limit``; raise ``SendFailed`` if not taken.

        ``before_send`` is awaited once, as late as the adapter can: when the request has a
        connection and is about to be written. The send ledger claims the piece there, so the
        time a claim is held without its request having left is as short as it can be. What it
        raises stops the send and is raised from ``send``.
        """
        ...

    async def call(self, account: ChannelAccount, call: PlatformCall) -> None:
        """Make a call ``parse`` asked for; raise ``SendFailed`` if the platform refuses it."""
        ...

    async def connect(
        self,
        credentials: Mapping[str, str],
        webhook_url: str,
        webhook_secret: str,
    ) -> ConnectedAccount:
        """Check the credentials with the platform, then point its webhook at ``webhook_url``.

        Raise ``CredentialsRefused`` when the platform refuses them.
        """
        ...

    async def disconnect(self, account: ChannelAccount) -> None:
        """Stop the platform's webhook deliveries for ``account``."""
        ...

    async def close(self) -> None:
        """Close the adapter's HTTP client."""
        ...


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a paragraph, line or word
    boundary where one falls in the second half of a piece, so no word is torn in two."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for boundary in ("\n\n", "\n", " "):
            at = window.rfind(boundary)
            if at >= limit // 2:
                cut = at + len(boundary)
                break
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip() or rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces
