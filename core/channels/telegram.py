"""Telegram's Bot API: webhooks verified by their secret token, messages sent with sendMessage.

Every call goes to ``<api base>/bot<token>/<method>``: the token is a path segment, so it is
checked to be a bot token's shape before it is ever put in a URL, and no error this module
raises carries a URL (an aiohttp error's text would). Facts used here, from the Bot API
reference: the ``X-Telegram-Bot-Api-Secret-Token`` header carries the secret given to
setWebhook; ``update_id`` identifies an update, so a redelivery repeats it; text is at most
4,096 characters; a 429 says ``parameters.retry_after``; about 1 message a second per chat and 30
a second per bot.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from pydantic import Field

from core import json_depth
from core.channels.base import (
    Attachment,
    BeforeSend,
    ChannelAccount,
    ConnectedAccount,
    Credentials,
    CredentialsModel,
    CredentialsRefused,
    MalformedWebhook,
    NormalizedMessage,
    OutboundText,
    ParsedWebhook,
    PlatformCall,
    RateLimits,
    SendFailed,
    SendReceipt,
    WebhookRefused,
)

TYPE = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
#: A bot token as BotFather issues it: the bot's numeric id, a colon, and a URL-safe secret.
TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")
#: What setWebhook accepts as a secret token.
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: The update kinds the webhook asks for; others are not delivered.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
GROUP_CHATS = ("group", "supergroup")
TIMEOUT_S = 15.0


class TelegramCredentials(Credentials):
    bot_token: str = Field(min_length=1, max_length=200)  # from @BotFather


class TelegramAdapter:
    type = TYPE
    credentials_model: CredentialsModel = TelegramCredentials
    inbound_webhook = True
    one_per_application = False
    secret_shown = False
    text_limit = 4096
    receiver_drops_repeats = False  # the Bot API takes no idempotency key
    durable_retries = False  # retried in the conversation's lane, a bounded number of times
    #: What the Bot API FAQ documents: about one message a second in a chat, 30 across chats.
    documented_limits = RateLimits(per_chat_per_s=1.0, per_bot_per_s=30.0)

    def __init__(
        self,
        api_base: str,
        *,
        timeout_s: float = TIMEOUT_S,
        rate_limits: RateLimits = documented_limits,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        self.rate_limits = rate_limits
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def new_secret(self) -> str:
        return secrets.token_urlsafe(32)  # 43 of setWebhook's A-Z, a-z, 0-9, _ and -

    def account_id(self, credentials: Mapping[str, str]) -> str:
        """The bot's id, which BotFather's tokens start with (``<bot id>:<secret>``): a token of
        another bot is refused before setWebhook would take that bot's webhook away."""
        return _token(credentials).partition(":")[0]

    # --- inbound ---------------------------------------------------------------------------

    def verify(self, account: ChannelAccount, headers: Mapping[str, str], body: bytes) -> None:
        wanted = SECRET_HEADER.lower()
        given = next((v for k, v in headers.items() if k.lower() == wanted), "")
        expected = account.webhook_secret
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRefused(f"missing or wrong {SECRET_HEADER}")

    def parse(self, account: ChannelAccount, body: bytes) -> ParsedWebhook:
        try:
            update = json_depth.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedWebhook(f"the body is not JSON: {error}") from error
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            raise MalformedWebhook("the body is not a Telegram Update (no integer update_id)")
        delivery_id = str(update["update_id"])
        try:
            return _parse_update(account, delivery_id, update)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise MalformedWebhook(f"the update is not shaped as Telegram's: {error!r}") from error

    # --- outbound --------------------------------------------------------------------------

    async def send(
        self, account: ChannelAccount, text: OutboundText, before_send: BeforeSend | None = None
    ) -> SendReceipt:
        payload: dict[str, Any] = {"chat_id": _chat(text.chat_id), "text": text.text}
        if _is_integer(text.reply_to):
            payload["reply_parameters"] = {
                "message_id": int(text.reply_to),
                "allow_sending_without_reply": True,
            }
        token = _token(account.credentials)
        result = await self._call(token, "sendMessage", payload, before_send=before_send)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return SendReceipt(platform_ids=(str(message_id),) if message_id is not None else ())

    async def call(self, account: ChannelAccount, call: PlatformCall) -> None:
        await self._call(_token(account.credentials), call.method, dict(call.payload))

    async def connect(
        self, credentials: Mapping[str, str], webhook_url: str, webhook_secret: str
    ) -> ConnectedAccount:
        token = _token(credentials)
        if not WEBHOOK_SECRET.fullmatch(webhook_secret):
            raise ValueError("a Telegram webhook secret is 1-256 of A-Z, a-z, 0-9, _ and -")
        try:
            me = await self._call(token, "getMe", {})
        except SendFailed as refused:
            if refused.permanent:
                reason = f"Telegram refused the bot token: {refused.reason}"
                raise CredentialsRefused(reason) from None
            raise
        if not isinstance(me, dict) or not me.get("is_bot") or "id" not in me:
            raise CredentialsRefused("the token is not a bot's (getMe did not describe a bot)")
        await self._call(
            token,
            "setWebhook",
            {
                "url": webhook_url,
                "secret_token": webhook_secret,
                "allowed_updates": list(ALLOWED_UPDATES),
            },
        )
        username = str(me.get("username") or "")
        return ConnectedAccount(
            platform_id=str(me["id"]),
            name=username or str(me.get("first_name") or ""),
            config={"bot_id": str(me["id"]), "bot_username": username},
        )

    async def disconnect(self, account: ChannelAccount) -> None:
        await self._call(_token(account.credentials), "deleteWebhook", {})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        token: str,
        method: str,
        payload: Mapping[str, Any],
        *,
        before_send: BeforeSend | None = None,
    ) -> Any:
        """One Bot API call's ``result``; ``SendFailed`` with Telegram's description if refused.

        ``before_send`` runs from aiohttp's connection hooks (its public tracing API): after the
        request has its connection, right before it is written.
        """
        if self._session is None:
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_create_end.append(_run_before_send)
            tracing.on_connection_reuseconn.append(_run_before_send)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s), trace_configs=[tracing]
            )
        url = f"{self._api_base}/bot{token}/{method}"
        hooks = {"before_send": before_send} if before_send is not None else None
        try:
            async with self._session.post(url, json=payload, trace_request_ctx=hooks) as response:
                status, raw = response.status, await response.read()
                retry_header = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as error:
            # The exception's text may hold the URL, and with it the token: only its kind.
            raise SendFailed(f"Telegram did not answer {method}: {type(error).__name__}") from None
        try:
            answer = json_depth.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if status == 200 and isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        return _refusal(method, status, answer, retry_header)


async def _run_before_send(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    hooks = context.trace_request_ctx
    if isinstance(hooks, dict) and (before_send := hooks.pop("before_send", None)) is not None:
        await before_send()  # popped: a redirect's new connection does not run it again


def _refusal(method: str, status: int, answer: Any, retry_header: str) -> Any:
    description = ""
    retry_after: float | None = None
    if isinstance(answer, dict):
        description = str(answer.get("description") or "")[:300]
        parameters = answer.get("parameters")
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
    if retry_after is None and retry_header.isascii() and retry_header.isdigit():
        retry_after = float(retry_header)
    reason = f"Telegram {method}: {status} {description}".rstrip()
    if status == 429:
        raise SendFailed(reason, retry_after_s=retry_after if retry_after is not None else 1.0)
    if status >= 500 or status in (408, 409) or answer is None:
        raise SendFailed(reason)
    # 400 (chat not found, message too long), 401 (token revoked), 403 (blocked by the user),
    # 404: the same call would be refused again.
    raise SendFailed(reason, permanent=True)


def _token(credentials: Mapping[str, str]) -> str:
    token = credentials.get("bot_token", "")
    if not TOKEN.fullmatch(token):
        raise CredentialsRefused("bot_token is not a Telegram bot token (digits:secret)")
    return token


def _is_integer(value: str) -> bool:
    digits = value.removeprefix("-")
    return digits.isascii() and digits.isdigit()


def _chat(chat_id: str) -> int | str:
    return int(chat_id) if _is_integer(chat_id) else chat_id


def _parse_update(
    account: ChannelAccount, delivery_id: str, update: dict[str, Any]
) -> ParsedWebhook:
    if isinstance(update.get("message"), dict):
        message = update["message"]
        if not _addressed(account, message):
            return ParsedWebhook(delivery_id, ignored="a group message not addressed to the bot")
        return ParsedWebhook(delivery_id, messages=(_message(message, "message"),))
    if isinstance(update.get("edited_message"), dict):
        edited = update["edited_message"]
        if not _addressed(account, edited):
            return ParsedWebhook(delivery_id, ignored="a group edit not addressed to the bot")
        return ParsedWebhook(delivery_id, messages=(_message(edited, "edit"),))
    if isinstance(update.get("callback_query"), dict):
        return _callback(delivery_id, update["callback_query"])
    kinds = sorted(key for key in update if key != "update_id")
    return ParsedWebhook(delivery_id, ignored=f"update kind {kinds} is not used")


def _message(message: dict[str, Any], kind: str) -> NormalizedMessage:
    chat = message["chat"]
    sender = message.get("from") or message.get("sender_chat") or {}
    attachments: list[Attachment] = []
    photos = message.get("photo")
    if isinstance(photos, list) and photos:
        largest = photos[-1]  # Telegram lists the sizes smallest first
        attachments.append(
            Attachment("image", str(largest["file_id"]), "image/jpeg", "", _size(largest))
        )
    document = message.get("document")
    if isinstance(document, dict):
        attachments.append(
            Attachment(
                "file",
                str(document["file_id"]),
                str(document.get("mime_type") or ""),
                str(document.get("file_name") or ""),
                _size(document),
            )
        )
    reply = message.get("reply_to_message")
    return NormalizedMessage(
        chat_id=str(int(chat["id"])),
        external_id=str(int(message["message_id"])),
        sender_id=str(sender.get("id", "")),
        text=str(message.get("text") or message.get("caption") or ""),
        kind=kind,
        sender_name=_name(sender),
        attachments=tuple(attachments),
        reply_to=str(reply["message_id"]) if isinstance(reply, dict) else "",
        sent_at=float(message.get("edit_date") or message.get("date") or 0),
    )


def _callback(delivery_id: str, query: dict[str, Any]) -> ParsedWebhook:
    answer = PlatformCall("answerCallbackQuery", {"callback_query_id": str(query["id"])})
    message = query.get("message")
    if not isinstance(message, dict):  # a button of an inline-mode message: no chat to answer
        return ParsedWebhook(delivery_id, after_ack=(answer,), ignored="an inline callback")
    sender = query["from"]
    postback = NormalizedMessage(
        chat_id=str(int(message["chat"]["id"])),
        external_id=f"callback:{query['id']}",
        sender_id=str(sender["id"]),
        text=str(query.get("data") or ""),
        kind="postback",
        sender_name=_name(sender),
        reply_to=str(message.get("message_id", "")),
    )
    return ParsedWebhook(delivery_id, messages=(postback,), after_ack=(answer,))


def _addressed(account: ChannelAccount, message: dict[str, Any]) -> bool:
    """In a group, only messages meant for the bot: a mention of it, a command (to it or to
    every bot), or a reply to one of its messages. Private chats always are."""
    if message["chat"].get("type") not in GROUP_CHATS:
        return True
    username = str(account.config.get("bot_username") or "").lower()
    bot_id = str(account.config.get("bot_id") or "")
    reply = message.get("reply_to_message")
    if isinstance(reply, dict) and str((reply.get("from") or {}).get("id", "")) == bot_id:
        return True
    text = str(message.get("text") or message.get("caption") or "")
    # Telegram counts entity offsets in UTF-16 code units (an emoji before a mention is two).
    units = text.encode("utf-16-le")
    entities = message.get("entities") or message.get("caption_entities") or []
    for entity in entities:
        start = 2 * int(entity.get("offset", 0))
        piece = units[start : start + 2 * int(entity.get("length", 0))].decode(
            "utf-16-le", errors="replace"
        )
        if entity.get("type") == "mention" and username and piece.lower() == f"@{username}":
            return True
        if entity.get("type") == "bot_command":
            target = piece.partition("@")[2].lower()
            if not target or target == username:
                return True
    return False


def _name(sender: dict[str, Any]) -> str:
    parts = [sender.get("first_name"), sender.get("last_name")]
    name = " ".join(str(p) for p in parts if p) or str(sender.get("title") or "")
    return name or str(sender.get("username") or "")


def _size(item: dict[str, Any]) -> int | None:
    size = item.get("file_size")
    return int(size) if isinstance(size, int) else None
