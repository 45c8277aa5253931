"""Deterministic ids, so every stage can recognise a record it has already applied.

A conversation id comes from the channel and the platform's chat id, so ingress can key a
message by it before the conversation document exists; a message id comes from the platform's
own message id (or the widget client's id), so a redelivered webhook maps to the same id.
"""

from __future__ import annotations

import hashlib
import uuid


def _digest(*parts: str) -> str:
    joined = "\x1f".join(parts)  # a separator no id contains, so ("a", "bc") != ("ab", "c")
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def conversation_id(channel: str, channel_id: str, chat_id: str) -> str:
    """The conversation of ``chat_id`` on one connected channel (the widget: its application)."""
    return "cv_" + _digest(channel, channel_id, chat_id)


def inbound_message_id(channel: str, channel_id: str, chat_id: str, external_id: str) -> str:
    return "in_" + _digest(channel, channel_id, chat_id, external_id)


def request_id(inbound_id: str) -> str:
    """The AI turn that answers one inbound message."""
    return "rq_" + _digest("request", inbound_id)


def answer_id(request: str) -> str:
    """The bot message that answers one request: a redelivered request maps to the same answer."""
    return "bt_" + _digest("answer", request)


def function_call_id(request: str, round_no: int, index: int, name: str, arguments: str) -> str:
    """One tool call of a turn: a repeated turn that asks the same thing maps to the same call."""
    return "fc_" + _digest("call", request, str(round_no), str(index), name, arguments)


def follow_up_id(answer: str, action: str) -> str:
    """The conversation command an answer's ``then_action`` becomes once it is delivered."""
    return "cmd_" + _digest("follow-up", answer, action)


def sandbox_message_id(sandbox: str, original_id: str) -> str:
    """A user's message copied into a sandbox (``switchboard replay refeed``)."""
    return "sbx_" + _digest("sandbox", sandbox, original_id)


def event_id(source_id: str, kind: str) -> str:
    return "ev_" + _digest(kind, source_id)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
