"""The delivery agent: bot and operator messages, stored once, then routed to their channel.

messages.outbound → platform.outbound, conversation.events; pushes to the socket service
through Redis for web conversations. Key: conversation id. Side effects: the message in MongoDB
(idempotent by id, with its delivery status), a delivery mark in Redis (see
``core.stores.delivery_marks``); reads the conversation-state table.

A bot answer made for an earlier mode epoch (an operator took over, or the conversation was
closed, after the user's message was sent to the bot) is not delivered: it is stored as
``suppressed``, and operators see it in their feed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.batches import BatchScope, run_batches
from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.outputs import Send, event_of, publish_all
from core import ids
from core.clients.database import Document
from core.errors import ValidationFailed
from core.stores.recent_messages import widget_view
from streams.app import app
from streams.contract import SANDBOX_CHANNEL, WEB_CHANNEL
from streams.records import ConversationCommand, OutboundMessage, PlatformSend, decode
from streams.topics import conversation_commands, messages_outbound, platform_outbound
from tables.conversations import ConversationState, conversation_state


def _document(plan: Delivery) -> Document:
    message = plan.message
    status = {WEB_CHANNEL: "delivered", SANDBOX_CHANNEL: "sandboxed"}.get(message.channel, "routed")
    if plan.stale:
        status = "suppressed"
    return {
        "_id": message.message_id,
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


#: Channels that never go to platform.outbound: the widget is pushed to directly, and a sandbox
#: goes nowhere. Every other channel's messages go to the platform sender; an API conversation's
#: too, which posts them to the application's webhook if it has one (they are stored either way,
#: for its server to read through the conversations API).
LOCAL_CHANNELS = (WEB_CHANNEL, SANDBOX_CHANNEL)


@dataclass(frozen=True)
class Delivery:
    message: OutboundMessage
    stale: bool
    mode: str  # the conversation's mode when the message was planned


@dataclass
class DeliveryStage:
    """The stage: checks each message against the table, then hands a batch to its channels."""

    deps: PipelineDeps
    table: Mapping[str, Any]
    name: str = "delivery"
    #: Who claims messages before handing them off: this worker process.
    owner: str = field(default_factory=lambda: f"claim:{uuid.uuid4().hex}")

    async def plan(self, raw: bytes, batch: BatchScope) -> Delivery:
        message = decode(raw)
        if not isinstance(message, OutboundMessage):
            raise ValidationFailed(f"{type(message).__name__} does not belong on messages.outbound")
        state: ConversationState | None = self.table.get(message.conversation_id)
        if state is not None and state.workspace_id != message.workspace_id:
            raise ValidationFailed("message names a conversation of another workspace")
        return Delivery(message, is_stale(message, state), state.mode if state else "")

    async def apply(self, plans: Sequence[Delivery]) -> None:
        live = list({p.message.message_id: p for p in plans if not p.stale}.values())
        mine = await self.deps.marks.claim((p.message.message_id for p in live), self.owner)
        to_route = [p.message for p in live if p.message.message_id in mine]
        await asyncio.gather(
            publish_all([_platform_send(m) for m in to_route if m.channel not in LOCAL_CHANNELS]),
            self._push_to_web([m for m in to_route if m.channel == WEB_CHANNEL]),
            # A sandbox conversation's answers are stored and announced, never sent.
        )
        routed = {m.message_id for m in to_route}
        events, announced = [], set()
        for plan in plans:
            message_id = plan.message.message_id
            if (plan.stale or message_id in routed) and message_id not in announced:
                announced.add(message_id)
                events.append(_event(plan))
                if not plan.stale and plan.message.then_action:
                    events.append(_follow_up(plan.message))
        # The hand-off is done; what remains is bookkeeping, which may run side by side.
        await asyncio.gather(
            self.deps.marks.mark(routed),
            self.deps.store.insert_messages([_document(p) for p in plans]),
            publish_all(events),
        )

    async def _push_to_web(self, messages: Sequence[OutboundMessage]) -> None:
        """Push to socket.io clients: in order within a conversation, concurrently across them."""
        by_conversation: dict[str, list[OutboundMessage]] = defaultdict(list)
        for message in messages:
            by_conversation[message.conversation_id].append(message)

        async def push_in_order(queue: list[OutboundMessage]) -> None:
            views = [_web_view(message) for message in queue]
            # Logged first: a widget that reconnects after missing the push finds it there.
            await self.deps.recent.append(queue[0].conversation_id, views)
            for view in views:
                await self.deps.realtime.to_conversation(view["conversation_id"], "message", view)

        await asyncio.gather(*(push_in_order(queue) for queue in by_conversation.values()))


def _web_view(message: OutboundMessage) -> dict[str, Any]:
    return widget_view(
        message.message_id,
        message.conversation_id,
        message.sender_role,
        message.text,
        message.created_at,
        message.request_id,
    )


def _event(plan: Delivery) -> Send:
    """What operators see: a bot answer suppressed, or a message handed to its channel.

    A suppressed answer is announced again if its record is redelivered; the event's id is
    the same, so a consumer drops the repeat.
    """
    message = plan.message
    if plan.stale:
        return event_of(
            message,
            "message.suppressed",
            message.message_id,
            mode=plan.mode,
            data={"text": message.text},
        )
    return event_of(
        message,
        "message.created",
        message.message_id,
        mode=plan.mode,
        data={"role": message.sender_role, "text": message.text},
    )


def _follow_up(message: OutboundMessage) -> Send:
    """The conversation action the bot's turn decided on, now that its answer is out.

    Its id comes from the answer's, so a redelivered answer repeats the command and
    message-process applies it once.
    """
    command = ConversationCommand(
        **message.envelope(ids.follow_up_id(message.message_id, message.then_action), time.time()),
        action=message.then_action,
        text=message.then_reason,
    )
    return Send(conversation_commands, message.conversation_id, command)


def _platform_send(message: OutboundMessage) -> Send:
    send = PlatformSend(
        **message.envelope(message.message_id, time.time()),
        text=message.text,
        sender_role=message.sender_role,
        in_reply_to=message.in_reply_to,
    )
    return Send(platform_outbound, message.conversation_id, send)


@app.agent(messages_outbound)
async def delivery(stream: Any) -> None:
    await run_batches(stream, DeliveryStage(await deps_of(app), conversation_state), app.consumer)
