"""The message-process agent: users' messages and operators' commands, one conversation in order.

messages.inbound + conversation.commands → agent.requests, messages.outbound,
conversation.events. Key: conversation id. Side effects: the conversation and its messages in
MongoDB (idempotent by id), the conversation-state table (the only writer).

The only creator of conversations: a user's first message creates one on any channel, and so
does an ``open`` command, which the applications service sends when a tenant's server starts a
conversation without a message. Either way the document is inserted once (its id is the
conversation's) and ``conversation.created`` is announced by the record whose insert made it.

A user's message is taken only from an application of its own workspace, on a connected channel
of that application and of the message's type (both read through Redis, once per batch); any
other is dead-lettered before it changes anything.

A redelivered record (after a crash or rebalance) runs again: every write is idempotent by id,
the table remembers which records it applied, and downstream stages ignore ids they have seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from agents.runtime.batches import BatchScope, run_batches
from agents.runtime.context import PipelineDeps, deps_of
from agents.runtime.outputs import Send, event_of, publish_all
from core import ids
from core.cached.applications import UnknownApplication
from core.cached.channel_directory import ChannelDisconnected, UnknownChannel
from core.clients.database import Document
from core.errors import NotFound, PermissionDenied, SwitchboardError, ValidationFailed
from streams.app import app
from streams.contract import API_CHANNEL
from streams.records import (
    AgentRequest,
    ConversationCommand,
    InboundMessage,
    OutboundMessage,
    PipelineRecord,
    decode,
)
from streams.topics import (
    agent_requests,
    message_process_source,
    messages_outbound,
)
from tables.conversations import ConversationState, conversation_state

StateTable = MutableMapping[str, Any]
T = TypeVar("T")

#: ``handoff`` is the bot's own request for a human (its ``handoff_to_human`` tool), applied
#: once its last answer is delivered; an operator's is ``takeover``.
MODES_AFTER = {"takeover": "human", "handoff": "human", "release": "bot", "close": "closed"}


def _envelope(record: PipelineRecord, message_id: str) -> dict[str, Any]:
    return record.envelope(message_id, time.time())


@dataclass
class Effects:
    """What one record writes, applied together with the rest of its batch."""

    #: The conversation's document, to create if it does not exist yet ...
    conversation: Document | None = None
    #: ... and what to announce if this record is what created it.
    on_created: list[Send] = field(default_factory=list)
    #: The conversation's id and the fields to set on its document (a mode change: rare).
    conversation_update: tuple[str, dict[str, Any]] | None = None
    messages: list[Document] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)


def new_state(record: PipelineRecord) -> ConversationState:
    return ConversationState(
        conversation_id=record.conversation_id,
        workspace_id=record.workspace_id,
        application_id=record.application_id,
        channel=record.channel,
        channel_id=record.channel_id,
        chat_id=record.chat_id,
    )


def conversation_document(state: ConversationState, contact_name: str = "") -> Document:
    document: Document = {
        "_id": state.conversation_id,
        "conversation_id": state.conversation_id,
        "workspace_id": state.workspace_id,
        "application_id": state.application_id,
        "channel": state.channel,
        "channel_id": state.channel_id,
        "chat_id": state.chat_id,
        "mode": state.mode,
    }
    if contact_name:
        document["contact_name"] = contact_name
    return document


def contact_of(message: InboundMessage) -> str:
    """Who a conversation this message opens is with, where the channel says: an API
    conversation is one person's, whom the tenant's server names as the sender."""
    return message.sender_name if message.channel == API_CHANNEL else ""


async def _once_per_batch(
    batch: BatchScope,
    key: tuple[str, ...],
    lookup: Callable[[], Awaitable[T]],
    refusals: tuple[type[SwitchboardError], ...],
) -> T:
    """``lookup()``'s answer, or its refusal (raised again each time), for the rest of the batch.

    A transient failure is not remembered: it propagates, and the record's plan is retried.
    """
    if key not in batch.lookups:
        try:
            batch.lookups[key] = await lookup()
        except refusals as refused:
            batch.lookups[key] = refused
    found = batch.lookups[key]
    if isinstance(found, SwitchboardError):
        raise type(found)(found.message)  # a fresh error: a raised one keeps its traceback
    return cast(T, found)


async def application_of(record: PipelineRecord, deps: PipelineDeps, batch: BatchScope) -> Document:
    """The record's application, looked up once per batch (an unknown one raises each time)."""
    return await _once_per_batch(
        batch,
        ("application", record.application_id, record.workspace_id),
        lambda: deps.applications.get(record.application_id, record.workspace_id),
        (UnknownApplication,),
    )


async def channel_of(record: PipelineRecord, deps: PipelineDeps, batch: BatchScope) -> Document:
    """The channel the record came in on, looked up once per batch; a refusal raises each time.

    The answer depends on every field the check compares, so they are all in the key.
    """
    return await _once_per_batch(
        batch,
        (
            "channel",
            record.channel,
            record.channel_id,
            record.workspace_id,
            record.application_id,
        ),
        lambda: deps.channels.resolve(record),
        (UnknownChannel, ChannelDisconnected),
    )


def plan_edit(message: InboundMessage, table: StateTable) -> Effects:
    """A user changed a message they sent: operators see the new text; the bot is not asked
    again (its answer stands), and an edit of a message never seen changes nothing."""
    state: ConversationState | None = table.get(message.conversation_id)
    effects = Effects()
    if state is None or state.workspace_id != message.workspace_id:
        return effects
    edited = ids.inbound_message_id(
        message.channel, message.channel_id, message.chat_id, message.external_id
    )
    effects.sends.append(
        event_of(
            message,
            "message.edited",
            message.message_id,
            mode=state.mode,
            data={"message_id": edited, "text": message.text, "edited_at": message.sent_at},
        )
    )
    return effects


def plan_inbound(message: InboundMessage, table: StateTable) -> Effects:
    if message.kind == "edit":
        return plan_edit(message, table)
    state: ConversationState | None = table.get(message.conversation_id)
    effects = Effects()
    if state is None:
        state = new_state(message)
        redelivered = False
    elif state.workspace_id != message.workspace_id:
        raise PermissionDenied("message names a conversation of another workspace")
    else:
        redelivered = state.seen(message.message_id)
    fresh = state.inbound_count == 0
    if not redelivered:
        if state.mode == "closed":  # a user writing again reopens the conversation with the bot
            state.mode, state.epoch = "bot", state.epoch + 1
        state.inbound_count += 1
        state.last_activity = time.time()
        state.add_turn("user", message.text, message.message_id)
        state.remember(message.message_id, seq=state.inbound_count)
        table[message.conversation_id] = state

    if fresh or redelivered:  # otherwise the conversation's document is known to exist
        effects.conversation = conversation_document(state, contact_of(message))
        effects.on_created.append(
            event_of(message, "conversation.created", message.conversation_id, mode=state.mode)
        )
    effects.messages.append(
        {
            "_id": message.message_id,
            **_envelope(message, message.message_id),
            "created_at": message.created_at or time.time(),
            "role": "user",
            "external_id": message.external_id,
            "sender_id": message.sender_id,
            "sender_name": message.sender_name,
            "text": message.text,
            "attachments": message.attachments or [],
            "kind": message.kind,
            "seq": state.seq_of(message.message_id),
            "status": "received",
        }
    )
    effects.sends.append(
        event_of(
            message,
            "message.created",
            message.message_id,
            mode=state.mode,
            data={"role": "user", "text": message.text},
        )
    )
    if state.mode == "bot":
        request = AgentRequest(
            **_envelope(message, message.message_id),
            request_id=ids.request_id(message.message_id),
            text=message.text,
            context=list(state.context or []),
            mode_epoch=state.epoch,
        )
        effects.sends.append(Send(agent_requests, message.conversation_id, request))
    return effects


def plan_open(command: ConversationCommand, table: StateTable) -> Effects:
    """A conversation a tenant's server opened: created once, however often it is asked for.

    A conversation that exists (opened before, or by its first message) is left as it is; a
    redelivered ``open`` that created it tries the insert again, in case the crash came first.
    """
    state: ConversationState | None = table.get(command.conversation_id)
    if state is not None and state.workspace_id != command.workspace_id:
        raise PermissionDenied("command names a conversation of another workspace")
    effects = Effects()
    if state is None:
        state = new_state(command)
        state.remember(command.message_id)
        table[command.conversation_id] = state
    elif not state.seen(command.message_id):
        return effects
    effects.conversation = conversation_document(state, command.contact_name)
    effects.on_created.append(
        event_of(command, "conversation.created", command.conversation_id, mode=state.mode)
    )
    return effects


def plan_command(command: ConversationCommand, table: StateTable) -> Effects:
    state: ConversationState | None = table.get(command.conversation_id)
    if state is None or state.workspace_id != command.workspace_id:
        raise NotFound(f"conversation {command.conversation_id} does not exist")
    if command.action not in (*MODES_AFTER, "assign", "reply"):
        raise ValidationFailed(f"unknown command action {command.action!r}")
    if not state.seen(command.message_id):
        _apply(command, state)
        state.remember(command.message_id)
        table[command.conversation_id] = state
    effects = Effects(
        conversation_update=(
            command.conversation_id,
            {"mode": state.mode, "assignee_id": state.assignee_id},
        )
    )
    if command.action == "assign":
        effects.sends.append(
            event_of(
                command,
                "conversation.assigned",
                command.message_id,
                mode=state.mode,
                data={"assignee_id": state.assignee_id},
            )
        )
    else:
        effects.sends.append(
            event_of(
                command,
                "mode.changed",
                command.message_id,
                mode=state.mode,
                data={
                    "action": command.action,
                    "operator_id": command.operator_id,
                    **({"reason": command.text} if command.action in MODES_AFTER else {}),
                },
            )
        )
    if command.action == "reply":
        reply = OutboundMessage(
            **_envelope(command, command.message_id),
            sender_role="operator",
            sender_id=command.operator_id,
            text=command.text,
            mode_epoch=state.epoch,
        )
        effects.sends.append(Send(messages_outbound, command.conversation_id, reply))
    return effects


def _apply(command: ConversationCommand, state: ConversationState) -> None:
    if command.action in MODES_AFTER:
        mode = MODES_AFTER[command.action]
    elif command.action == "reply":
        if not command.text:
            raise ValidationFailed("a reply needs text")
        # An operator who replies has the conversation: the bot must not talk over them.
        mode = "human" if state.mode == "bot" else state.mode
        state.add_turn("operator", command.text, command.message_id)
    else:
        mode = state.mode
    if command.action == "takeover":
        state.assignee_id = command.assignee_id or command.operator_id
    elif command.action == "assign":  # an empty assignee unassigns
        state.assignee_id = command.assignee_id
    if mode != state.mode:
        state.mode, state.epoch = mode, state.epoch + 1
    state.last_activity = time.time()


@dataclass
class MessageProcess:
    """The stage: plans each record against the table, then writes a batch's effects at once."""

    deps: PipelineDeps
    table: StateTable
    name: str = "message-process"

    async def plan(self, raw: bytes, batch: BatchScope) -> Effects:
        record = decode(raw)
        if isinstance(record, InboundMessage):
            await application_of(record, self.deps, batch)
            await channel_of(record, self.deps, batch)
            return plan_inbound(record, self.table)
        if isinstance(record, ConversationCommand) and record.action == "open":
            # Checked as a first message would be: its application, and the API's channel.
            await application_of(record, self.deps, batch)
            await channel_of(record, self.deps, batch)
            return plan_open(record, self.table)
        if isinstance(record, ConversationCommand):
            return plan_command(record, self.table)
        raise ValidationFailed(f"{type(record).__name__} does not belong on this topic")

    async def apply(self, plans: Sequence[Effects]) -> None:
        store = self.deps.store
        new = [p.conversation for p in plans if p.conversation]
        created = await store.create_conversations(new)
        announce: list[Send] = []
        for effects in plans:
            conversation = effects.conversation
            if conversation is not None and conversation["_id"] in created:
                created.discard(conversation["_id"])  # announced once, by its first record
                announce.extend(effects.on_created)
        updates = dict(p.conversation_update for p in plans if p.conversation_update)
        for conversation_id, fields in updates.items():
            await store.set_conversation(conversation_id, **fields)
        # Stored and produced side by side: the AI stage reads its context from the request,
        # not from the database, and a crash repeats both.
        await asyncio.gather(
            store.insert_messages([m for p in plans for m in p.messages]),
            publish_all([*announce, *(s for p in plans for s in p.sends)]),
        )


@app.agent(message_process_source)
async def message_process(stream: Any) -> None:
    await run_batches(stream, MessageProcess(await deps_of(app), conversation_state), app.consumer)
