"""What the channel tests share: connected channels made as the bots service makes them (sealed
credentials and secret), the records the platform sender takes, and waiting for a condition."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from core import ids
from core.clients.database import Document
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.channel_store import seal_credentials
from streams.records import PlatformSend
from tests.integration.pipeline_harness import insert_documents


def bot_token(bot_id: int) -> str:
    """A token of BotFather's shape for bot ``bot_id``."""
    return f"{bot_id}:" + secrets.token_urlsafe(32)[:35]


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


async def telegram_channel(
    settings: Settings,
    workspace_id: str,
    application_id: str,
    token: str,
    *,
    webhook_secret: str = "",
    username: str = "switchboard_test_bot",
) -> Document:
    """A connected Telegram channel, as stored after a connect (the webhook is not set)."""
    box = _box(settings)
    bot_id = token.split(":", 1)[0]
    channel: Document = {
        "_id": ids.new_id("ch"),
        "workspace_id": workspace_id,
        "application_id": application_id,
        "type": "telegram",
        "status": "active",
        "name": username,
        "platform_id": bot_id,
        "config": {"bot_id": bot_id, "bot_username": username},
        "credentials": seal_credentials(box, {"bot_token": token}),
        "webhook_secret": box.seal(webhook_secret or secrets.token_urlsafe(32)),
        "created_at": time.time(),
    }
    await insert_documents(settings, "channels", channel)
    return channel


async def api_channel(
    settings: Settings, workspace_id: str, application_id: str, url: str, signing_secret: str
) -> Document:
    """An application's API channel posting to ``url``; its id is the application's."""
    channel: Document = {
        "_id": application_id,
        "workspace_id": workspace_id,
        "application_id": application_id,
        "type": "api",
        "status": "active",
        "name": url,
        "config": {"webhook_url": url},
        "credentials": seal_credentials(_box(settings), {"url": url}),
        "webhook_secret": _box(settings).seal(signing_secret),
        "created_at": time.time(),
    }
    await insert_documents(settings, "channels", channel)
    return channel


def platform_send(
    channel: Document, chat_id: str, text: str, *, created_at: float | None = None
) -> PlatformSend:
    """A bot answer for ``chat_id`` on ``channel``, as the delivery agent hands it over."""
    return PlatformSend(
        message_id=ids.new_id("bt"),
        conversation_id=ids.conversation_id(channel["type"], channel["_id"], chat_id),
        workspace_id=channel["workspace_id"],
        application_id=channel["application_id"],
        channel=channel["type"],
        channel_id=channel["_id"],
        chat_id=chat_id,
        created_at=created_at if created_at is not None else time.time(),
        trace_id=uuid.uuid4().hex,
        text=text,
    )


async def until(condition: Callable[[], Any], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.1)
