"""The delivery agent: bot and operator messages, stored once, then routed to their channel.

messages.outbound → platform.outbound, conversation.events; pushes to the socket service
through Redis for web conversations. Key: conversation id. Side effects: the message in MongoDB
(idempotent by id, with its delivery status); reads the conversation-state table.

A bot answer made for an earlier mode epoch (an operator took over, or the conversation was
closed, after the user's message was sent to the bot) is not delivered: it is stored as
``suppressed``, and operators see it in their feed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agents.context import PipelineDeps, deps_of
from agents.failures import handle_safely, publish
from agents.message_process import emit_event
from core.errors import ValidationFailed
from streams.app import app
from streams.records import OutboundMessage, PlatformSend, decode
from streams.topics import messages_outbound, platform_outbound
from tables.conversations import ConversationState, conversation_state


def _document(message: OutboundMessage, status: str) -> dict[str, Any]:
    return {
        **message.envelope(message.message_id, message.created_at or time.time()),
        "role": message.sender_role,
        "sender_id": message.sender_id,
        "in_reply_to": message.in_reply_to,
        "request_id": message.request_id,
        "text": message.text,
        "status": status,
    }


def is_stale(message: OutboundMessage, state: ConversationState | None) -> bool:
    """True for a bot answer the conversation no longer wants."""
    if message.sender_role != "bot":
        return False
    return state is None or state.mode != "bot" or state.epoch != message.mode_epoch


async def handle_outbound(
    message: OutboundMessage, deps: PipelineDeps, table: Mapping[str, Any]
) -> None:
    state: ConversationState | None = table.get(message.conversation_id)
    if state is not None and state.workspace_id != message.workspace_id:
        raise ValidationFailed("message names a conversation of another workspace")
    if is_stale(message, state):
        if await deps.store.insert_message(_document(message, "suppressed")):
            await emit_event(
                message,
                "message.suppressed",
                message.message_id,
                mode=state.mode if state else "",
                data={"text": message.text},
            )
        return
    document = _document(message, "accepted")
    # A message stored just now cannot have been routed yet; only a redelivered one is looked up
    # (FerretDB scans the collection to find an id that is not there).
    first_time = await deps.store.insert_message(document)
    if not first_time and await deps.store.delivery(message.message_id) is not None:
        return  # a redelivery of a message already routed
    await _route(message, deps)
    await deps.store.record_delivery(
        document, "delivered" if message.channel == "web" else "routed"
    )
    await emit_event(
        message,
        "message.created",
        message.message_id,
        mode=state.mode if state else "",
        data={"role": message.sender_role, "text": message.text},
    )


async def _route(message: OutboundMessage, deps: PipelineDeps) -> None:
    if message.channel == "web":
        await deps.realtime.to_conversation(
            message.conversation_id,
            "message",
            {
                "id": message.message_id,
                "conversation_id": message.conversation_id,
                "role": message.sender_role,
                "text": message.text,
                "created_at": message.created_at,
            },
        )
        return
    send = PlatformSend(
        **message.envelope(message.message_id, time.time()),
        text=message.text,
        sender_role=message.sender_role,
        in_reply_to=message.in_reply_to,
    )
    await publish(platform_outbound, message.conversation_id, send)


async def handle_record(raw: bytes, deps: PipelineDeps, table: Mapping[str, Any]) -> None:
    record = decode(raw)
    if not isinstance(record, OutboundMessage):
        raise ValidationFailed(f"{type(record).__name__} does not belong on messages.outbound")
    await handle_outbound(record, deps, table)


@app.agent(messages_outbound)
async def delivery(stream: Any) -> None:
    deps = await deps_of(app)
    async for event in stream.events():
        await handle_safely(
            event, "delivery", lambda raw: handle_record(raw, deps, conversation_state)
        )
