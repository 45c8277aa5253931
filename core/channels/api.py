"""The API channel: a tenant's own system talks for its end users.

Inbound, the tenant's server posts its users' messages with an application API key
(``POST /api/apps/{id}/conversations``, the applications service), so there is no webhook to
verify here. Outbound, every bot and operator message is POSTed to the channel's webhook URL,
signed the Standard Webhooks way with the channel's secret, through the egress guard: the URL
is the tenant's and must not reach the platform's own network. Redirects are not followed (a
POST would turn into a GET elsewhere, without its signature): the URL must be the final one.
Every failure (a receiver that is down, any status but 2xx, a refused destination) is retried by
the sender on its durable schedule, and receivers drop repeats by ``webhook-id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from pydantic import Field

from core.channels import standard_webhooks
from core.channels.base import (
    BeforeSend,
    ChannelAccount,
    ConnectedAccount,
    Credentials,
    CredentialsModel,
    CredentialsRefused,
    OutboundText,
    ParsedWebhook,
    PlatformCall,
    RateLimits,
    SendFailed,
    SendReceipt,
    WebhookRefused,
)
from core.security.egress import EgressClient, EgressRefused, check_destination

TYPE = "api"


class ApiCredentials(Credentials):
    #: Where every bot and operator message is POSTed, signed; checked by the egress guard.
    url: str = Field(min_length=1, max_length=2_000)


class ApiChannelAdapter:
    type = TYPE
    credentials_model: CredentialsModel = ApiCredentials
    inbound_webhook = False  # the tenant's server posts with an API key instead
    one_per_application = True
    secret_shown = True  # the signing secret, for the tenant's receiver to verify with
    #: Receivers take what the API took in: the conversations API's longest text.
    text_limit = 16_000
    rate_limits = RateLimits(per_chat_per_s=50.0, per_bot_per_s=200.0)
    receiver_drops_repeats = True  # receivers deduplicate on webhook-id
    #: A tenant's receiver may be away for hours: failed sends are parked on a durable schedule.
    durable_retries = True

    def __init__(self, egress: EgressClient) -> None:
        self._egress = egress

    def new_secret(self) -> str:
        return standard_webhooks.new_secret()

    def account_id(self, credentials: Mapping[str, str]) -> str:
        return ""  # one per application: the application is the account

    def verify(self, account: ChannelAccount, headers: Mapping[str, str], body: bytes) -> None:
        raise WebhookRefused(
            "the API channel takes messages at /api/apps/{id}/conversations with an API key"
        )

    def parse(self, account: ChannelAccount, body: bytes) -> ParsedWebhook:
        raise WebhookRefused("the API channel has no webhook")

    async def send(
        self, account: ChannelAccount, text: OutboundText, before_send: BeforeSend | None = None
    ) -> SendReceipt:
        url = str(account.config.get("webhook_url") or "")
        body = json.dumps(
            {
                "type": "message.created",
                "timestamp": time.time(),
                "data": {
                    "message_id": text.message_id,
                    "conversation_id": text.conversation_id,
                    "application_id": account.application_id,
                    "external_user_id": text.chat_id,
                    "role": text.sender_role,
                    "text": text.text,
                    "in_reply_to": text.in_reply_to,
                },
            },
            separators=(",", ":"),
        ).encode()
        signed = standard_webhooks.headers(account.webhook_secret, text.message_id, body)
        if before_send is not None:
            await before_send()
        try:
            answer = await self._egress.request(
                "POST",
                url,
                headers={**signed, "Content-Type": "application/json"},
                data=body,
            )
        except EgressRefused as refused:
            # Retried like a receiver that is away: the tenant may fix the URL (a rotation is
            # read on the next attempt), and every attempt is checked again.
            raise SendFailed(f"the webhook URL is refused: {refused.message}") from None
        except (OSError, TimeoutError) as error:
            raise SendFailed(f"the webhook URL did not answer: {type(error).__name__}") from None
        except Exception as error:  # aiohttp's errors: the receiver is away or broke the reply
            raise SendFailed(f"the webhook call failed: {type(error).__name__}") from None
        if not 200 <= answer.status < 300:
            raise SendFailed(f"the webhook URL answered {answer.status}")
        return SendReceipt()

    async def call(self, account: ChannelAccount, call: PlatformCall) -> None:
        raise SendFailed(f"the API channel has no call {call.method}", permanent=True)

    async def connect(
        self, credentials: Mapping[str, str], webhook_url: str, webhook_secret: str
    ) -> ConnectedAccount:
        """Check that the tenant's URL may be called; ``webhook_url`` (ours) is unused."""
        url = credentials.get("url", "")
        try:
            await check_destination(url, self._egress.policy)
        except EgressRefused as refused:
            raise CredentialsRefused(f"the webhook URL is refused: {refused.message}") from None
        return ConnectedAccount(platform_id="", name=url, config={"webhook_url": url})

    async def disconnect(self, account: ChannelAccount) -> None:
        """Nothing to undo on the tenant's side: its URL simply gets no more calls."""

    async def close(self) -> None:
        """The egress client is the caller's; it closes it."""
