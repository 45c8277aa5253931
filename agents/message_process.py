"""The message-process agent: users' messages and operators' commands, one conversation in order.

messages.inbound + conversation.commands → agent.requests, messages.outbound,
conversation.events. Key: conversation id. Side effects: the conversation and its messages in
MongoDB (idempotent by id), the conversation-state table (the only writer).

A redelivered record (after a crash or rebalance) runs again: every write is idempotent by id,
the table remembers which records it applied, and downstream stages ignore ids they have seen.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from agents.context import PipelineDeps, deps_of
from agents.failures import handle_safely, publish
from core import ids
from core.errors import NotFound, PermissionDenied, ValidationFailed
from streams.app import app
from streams.records import (
    AgentRequest,
    ConversationCommand,
    ConversationEvent,
    InboundMessage,
    OutboundMessage,
    PipelineRecord,
    decode,
)
from streams.topics import (
    agent_requests,
    conversation_events,
    message_process_source,
    messages_outbound,
)
from tables.conversations import ConversationState, conversation_state

StateTable = MutableMapping[str, Any]

MODES_AFTER = {"takeover": "human", "release": "bot", "close": "closed"}


def _envelope(record: PipelineRecord, message_id: str) -> dict[str, Any]:
    return record.envelope(message_id, time.time())


async def emit_event(record: PipelineRecord, kind: str, subject_id: str, **fields: Any) -> None:
    event = ConversationEvent(
        **_envelope(record, ids.event_id(subject_id, kind)),
        type=kind,
        subject_id=subject_id,
        **fields,
    )
    await publish(conversation_events, record.conversation_id, event)


def new_state(record: PipelineRecord) -> ConversationState:
    return ConversationState(
        conversation_id=record.conversation_id,
        workspace_id=record.workspace_id,
        application_id=record.application_id,
        channel=record.channel,
        channel_id=record.channel_id,
        chat_id=record.chat_id,
    )


def _conversation_fields(state: ConversationState) -> dict[str, Any]:
    return {
        "conversation_id": state.conversation_id,
        "workspace_id": state.workspace_id,
        "application_id": state.application_id,
        "channel": state.channel,
        "channel_id": state.channel_id,
        "chat_id": state.chat_id,
    }


async def handle_inbound(message: InboundMessage, deps: PipelineDeps, table: StateTable) -> None:
    await deps.applications.get(message.application_id, message.workspace_id)
    state: ConversationState | None = table.get(message.conversation_id)
    if state is None:
        state = new_state(message)
    elif state.workspace_id != message.workspace_id:
        raise PermissionDenied("message names a conversation of another workspace")
    redelivered = state.seen(message.message_id)
    if not redelivered:
        if state.mode == "closed":  # a user writing again reopens the conversation with the bot
            state.mode, state.epoch = "bot", state.epoch + 1
        state.inbound_count += 1
        state.last_activity = time.time()
        state.add_turn("user", message.text, message.message_id)
        state.remember(message.message_id, seq=state.inbound_count)
        table[message.conversation_id] = state

    if await deps.store.create_conversation(_conversation_fields(state), mode=state.mode):
        await emit_event(message, "conversation.created", message.conversation_id, mode=state.mode)
    await deps.store.insert_message(
        {
            **_envelope(message, message.message_id),
            "created_at": message.created_at or time.time(),
            "role": "user",
            "external_id": message.external_id,
            "sender_id": message.sender_id,
            "sender_name": message.sender_name,
            "text": message.text,
            "attachments": message.attachments or [],
            "seq": state.seq_of(message.message_id),
            "status": "received",
        }
    )
    await emit_event(
        message,
        "message.created",
        message.message_id,
        mode=state.mode,
        data={"role": "user", "text": message.text},
    )
    if state.mode == "bot":
        request = AgentRequest(
            **_envelope(message, message.message_id),
            request_id=ids.request_id(message.message_id),
            text=message.text,
            context=list(state.context or []),
            mode_epoch=state.epoch,
        )
        await publish(agent_requests, message.conversation_id, request)


async def handle_command(
    command: ConversationCommand, deps: PipelineDeps, table: StateTable
) -> None:
    state: ConversationState | None = table.get(command.conversation_id)
    if state is None or state.workspace_id != command.workspace_id:
        raise NotFound(f"conversation {command.conversation_id} does not exist")
    if command.action not in (*MODES_AFTER, "assign", "reply"):
        raise ValidationFailed(f"unknown command action {command.action!r}")
    if not state.seen(command.message_id):
        _apply(command, state)
        state.remember(command.message_id)
        table[command.conversation_id] = state
    await deps.store.set_conversation(
        command.conversation_id, mode=state.mode, assignee_id=state.assignee_id
    )
    if command.action == "assign":
        await emit_event(
            command,
            "conversation.assigned",
            command.message_id,
            mode=state.mode,
            data={"assignee_id": state.assignee_id},
        )
    else:
        await emit_event(
            command,
            "mode.changed",
            command.message_id,
            mode=state.mode,
            data={"action": command.action, "operator_id": command.operator_id},
        )
    if command.action == "reply":
        reply = OutboundMessage(
            **_envelope(command, command.message_id),
            sender_role="operator",
            sender_id=command.operator_id,
            text=command.text,
            mode_epoch=state.epoch,
        )
        await publish(messages_outbound, command.conversation_id, reply)


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
    if command.action == "takeover" or (command.action == "assign" and command.assignee_id):
        state.assignee_id = command.assignee_id or command.operator_id
    if mode != state.mode:
        state.mode, state.epoch = mode, state.epoch + 1
    state.last_activity = time.time()


async def handle_record(raw: bytes, deps: PipelineDeps, table: StateTable) -> None:
    record = decode(raw)
    if isinstance(record, InboundMessage):
        await handle_inbound(record, deps, table)
    elif isinstance(record, ConversationCommand):
        await handle_command(record, deps, table)
    else:
        raise ValidationFailed(f"{type(record).__name__} does not belong on this topic")


@app.agent(message_process_source)
async def message_process(stream: Any) -> None:
    deps = await deps_of(app)
    async for event in stream.events():
        await handle_safely(
            event, "message-process", lambda raw: handle_record(raw, deps, conversation_state)
        )
