"""Every record on a pipeline topic: the contract between stages.

Records travel as JSON with Faust's namespace marker, so a consumer of a topic that carries
several kinds (the message-process agent reads messages and commands) gets the right class
back. Every field added later must have a default, and ``version`` says which shape a producer
wrote: old records keep parsing, and unknown fields from newer producers are kept, not refused.
"""

# Faust reads these annotations at class creation: keep them as real typing objects.
import json
from typing import Any, Dict, List, Optional  # noqa: UP035

import faust
from faust.models.base import maybe_model

from core.ids import answer_id

SCHEMA_VERSION = 1


class PipelineRecord(faust.Record, abstract=True, serializer="json"):
    """What every record carries: ids, tenant, channel, time and a trace id."""

    message_id: str
    conversation_id: str
    workspace_id: str
    application_id: str
    channel: str  # web, telegram, messenger, whatsapp, slack; sandbox (replays)
    channel_id: str = ""  # the connected channel; the application id for the web widget
    chat_id: str = ""  # the platform's chat (for the widget: the visitor)
    created_at: float = 0.0  # seconds since the epoch, when the record was produced
    trace_id: str = ""
    version: int = SCHEMA_VERSION

    def envelope(self, message_id: str, created_at: float) -> Dict[str, Any]:  # noqa: UP006
        """This record's conversation, tenant, channel and trace, for a record made from it."""
        return {
            "message_id": message_id,
            "conversation_id": self.conversation_id,
            "workspace_id": self.workspace_id,
            "application_id": self.application_id,
            "channel": self.channel,
            "channel_id": self.channel_id,
            "chat_id": self.chat_id,
            "created_at": created_at,
            "trace_id": self.trace_id,
        }


class InboundMessage(PipelineRecord, namespace="switchboard.InboundMessage"):
    """A user's message from any channel, normalized at ingress."""

    external_id: str = ""  # the platform's message id (or the widget client's id)
    sender_id: str = ""
    sender_name: str = ""
    text: str = ""
    attachments: Optional[List[Dict[str, Any]]] = None  # noqa: UP006, UP045
    #: ``message`` (a turn), ``postback`` (a button's data, in ``text``: a turn too), or
    #: ``edit`` (the user changed ``external_id``'s text: shown to operators, not a new turn).
    kind: str = "message"
    reply_to: str = ""  # the platform's id of the message this one answers
    sent_at: float = 0.0  # when the platform says the user sent it


class ConversationCommand(PipelineRecord, namespace="switchboard.ConversationCommand"):
    """An operator's action on a conversation; ``message_id`` is the command id.

    ``open`` is a tenant's server starting a conversation through the applications API: the
    message-process agent creates it, as a first message would.
    """

    action: str = ""  # takeover, release, close, assign, reply; open
    operator_id: str = ""
    assignee_id: str = ""
    text: str = ""  # for reply
    contact_name: str = ""  # for open: who the conversation is with, as the server names them


class AgentRequest(PipelineRecord, namespace="switchboard.AgentRequest"):
    """A turn the AI stage must answer; ``message_id`` is the inbound message it answers."""

    request_id: str = ""
    text: str = ""
    context: Optional[List[Dict[str, Any]]] = None  # noqa: UP006, UP045 (recent turns)
    mode_epoch: int = 0  # the conversation's mode epoch when the request was made


class OutboundMessage(PipelineRecord, namespace="switchboard.OutboundMessage"):
    """A bot or operator message to deliver; ``message_id`` is its own id."""

    sender_role: str = "bot"  # bot, operator
    sender_id: str = ""
    in_reply_to: str = ""
    request_id: str = ""
    text: str = ""
    mode_epoch: int = 0  # for bot answers: the epoch of the request being answered
    #: A conversation action the bot's turn decided on (``handoff`` or ``close``), applied once
    #: this answer is delivered, so the user reads the bot's last words before it takes effect.
    then_action: str = ""
    then_reason: str = ""


def bot_answer(
    request: AgentRequest,
    text: str,
    *,
    created_at: float,
    then_action: str = "",
    then_reason: str = "",
) -> OutboundMessage:
    """The bot's answer to ``request``: its id comes from the request's, so a retry repeats it."""
    return OutboundMessage(
        **request.envelope(answer_id(request.request_id), created_at),
        sender_role="bot",
        in_reply_to=request.message_id,
        request_id=request.request_id,
        text=text,
        mode_epoch=request.mode_epoch,
        then_action=then_action,
        then_reason=then_reason,
    )


class PlatformSend(PipelineRecord, namespace="switchboard.PlatformSend"):
    """A message for a messaging platform's send API, for the platform sender."""

    text: str = ""
    sender_role: str = "bot"
    in_reply_to: str = ""


class ConversationEvent(PipelineRecord, namespace="switchboard.ConversationEvent"):
    """Something operators should see: ``message_id`` is the event id."""

    type: str = ""  # conversation.created, message.created, mode.changed, ...
    subject_id: str = ""  # the message or command the event is about
    mode: str = ""
    data: Optional[Dict[str, Any]] = None  # noqa: UP006, UP045


class FunctionCall(PipelineRecord, namespace="switchboard.FunctionCall"):
    """A tool the model asked for; ``call_id`` (also ``message_id``) is deterministic from the
    request, the round, the call's place and its arguments, so a repeated turn repeats it."""

    request_id: str = ""
    call_id: str = ""
    name: str = ""
    arguments: Optional[Dict[str, Any]] = None  # noqa: UP006, UP045


class FunctionResult(PipelineRecord, namespace="switchboard.FunctionResult"):
    """A tool's outcome: ``result`` when it ran, ``error`` (which the model reads) when not."""

    request_id: str = ""
    call_id: str = ""
    name: str = ""
    result: Optional[Dict[str, Any]] = None  # noqa: UP006, UP045
    error: str = ""


class DeadLetter(faust.Record, serializer="json", namespace="switchboard.DeadLetter"):
    """A record a stage gave up on, with why, where it came from and how often it was tried."""

    source_topic: str
    partition: int
    offset: int
    key: str
    reason: str
    error_type: str
    attempts: int
    failed_at: float
    value: str  # the original bytes, as text
    stage: str = ""
    version: int = SCHEMA_VERSION


class UndecodableRecord(ValueError):
    """The bytes on a topic are not a record of this contract (a poison message)."""


def decode(raw: bytes | str | None) -> PipelineRecord:
    """Parse a topic's bytes into its record, refusing anything that is not one."""
    if raw is None:
        raise UndecodableRecord("empty value")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise UndecodableRecord(f"not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise UndecodableRecord("not a JSON object")
    try:
        record = maybe_model(payload)
    except Exception as error:
        raise UndecodableRecord(f"does not fit its record type: {error}") from error
    if not isinstance(record, PipelineRecord):
        raise UndecodableRecord("no known record type (missing or unknown __faust.ns)")
    for name in ("message_id", "conversation_id", "workspace_id", "application_id", "channel"):
        value = getattr(record, name, None)
        if not isinstance(value, str) or not value:
            raise UndecodableRecord(f"field {name!r} is missing or empty")
    return record


def encode(record: faust.Record) -> bytes:
    data: bytes = record.dumps(serializer="json")
    return data
