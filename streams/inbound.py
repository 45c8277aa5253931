"""The one builder of ``InboundMessage`` records, for every channel's ingress.

Webhooks (through their adapter's normalized messages), the widget and the API channel all come
here, so every record's ids are made the same way: the conversation's from the channel and the
platform's chat, the message's from the platform's own message id, which makes a redelivered
message the same record.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from core import ids
from core.channels.base import NormalizedMessage
from streams.records import InboundMessage


@dataclass(frozen=True)
class Origin:
    """Where a message came in: the tenant, and the connected channel (the widget's and the API
    channel's id is their application's)."""

    workspace_id: str
    application_id: str
    channel: str
    channel_id: str


def inbound_record(
    origin: Origin, message: NormalizedMessage, *, trace_id: str | None = None
) -> InboundMessage:
    chat_id = message.chat_id
    return InboundMessage(
        message_id=ids.inbound_message_id(
            origin.channel, origin.channel_id, chat_id, _external_key(message)
        ),
        conversation_id=ids.conversation_id(origin.channel, origin.channel_id, chat_id),
        workspace_id=origin.workspace_id,
        application_id=origin.application_id,
        channel=origin.channel,
        channel_id=origin.channel_id,
        chat_id=chat_id,
        created_at=time.time(),
        trace_id=trace_id or uuid.uuid4().hex,
        external_id=message.external_id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        text=message.text,
        attachments=[a.as_dict() for a in message.attachments] or None,
        kind=message.kind,
        reply_to=message.reply_to,
        sent_at=message.sent_at,
    )


def _external_key(message: NormalizedMessage) -> str:
    """What makes the message's id: an edit is a new record about the same platform message,
    so its id carries the edit's time (a redelivered edit is still the same record)."""
    if message.kind == "edit":
        return f"{message.external_id}\x1fedit\x1f{message.sent_at}"
    return message.external_id
