"""The conversations service: lists, history and search, and operator commands published to Kafka.

Reads go to MongoDB, always scoped by the caller's workspace: another workspace's conversation
answers 404 exactly as a missing one. Writes are never made here: takeover, release, close,
assign and reply become a ``ConversationCommand`` on ``conversation.commands`` (keyed by the
conversation id), answered 202 with the command id once the broker has it; the message-process
agent applies it in order with the conversation's messages. Every role (owner, admin, agent)
may work conversations.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from core import ids
from core.clients.database import Document, database
from core.clients.producer import LazyProducer
from core.errors import ValidationFailed
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.conversation_queries import ConversationFilter, ConversationQueries, Cursor, Page
from streams.records import ConversationCommand, encode
from streams.topics import conversation_commands
from web.auth import ROLES, TOKENS, Principal, principal
from web.health import Dependency
from web.keys import MONGO, PRODUCER, SETTINGS
from web.openapi import Operation
from web.service import service_app
from web.validation import parse_body, parse_query

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS, Dependency.KAFKA)
PREFIX = "/api/conversations"
COMMANDS_TOPIC = conversation_commands.get_topic_name()

#: An id or a name in a filter: never empty, never huge.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # ObjectId and the like


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, default=_json_default))


# --- requests ---------------------------------------------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Paged(_Query):
    limit: int = Field(20, ge=1, le=100)
    cursor: Cursor | None = None

    @field_validator("cursor", mode="before")
    @classmethod
    def _cursor(cls, value: object) -> object:
        if isinstance(value, str):
            return Cursor.decode(value)  # ValueError: a 422 naming the field
        return value


class ListQuery(_Paged):
    application_id: Name | None = None
    status: Literal["bot", "human", "closed"] | None = None
    channel: Name | None = None
    assignee_id: Name | None = None
    updated_since: float | None = None

    @field_validator("updated_since", mode="before")
    @classmethod
    def _since(cls, value: object) -> object:
        """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
        if not isinstance(value, str):
            return value
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError as error:
                raise ValueError("epoch seconds or an ISO 8601 time") from error
            seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        if not math.isfinite(seconds):
            raise ValueError("epoch seconds or an ISO 8601 time")
        return seconds


class SearchQuery(_Query):
    q: str = Field(min_length=2, max_length=200)
    limit: int = Field(20, ge=1, le=100)
    application_id: Name | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModeBody(_Body):
    """Takeover, release and close: no body, ``{}``, or a reason shown to other operators."""

    reason: str = Field("", max_length=500)


class AssignBody(_Body):
    assignee_id: str | None = Field(max_length=200)

    @field_validator("assignee_id")
    @classmethod
    def _present(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a user id, or null to unassign")
        return value


class ReplyBody(_Body):
    text: str = Field(min_length=1, max_length=4000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reply is blank")
        return value


# --- handlers ---------------------------------------------------------------------------------


def _queries(request: web.Request) -> ConversationQueries:
    return ConversationQueries(database(request.app[MONGO], request.app[SETTINGS]))


async def _operator(request: web.Request) -> Principal:
    caller = await principal(request)
    caller.require(*ROLES)  # agents work conversations, as owners and admins do
    return caller


def _page(page: Page) -> web.Response:
    return _json({"items": page.items, "next_cursor": page.next_cursor})


async def list_conversations(request: web.Request) -> web.Response:
    caller = await _operator(request)
    query = parse_query(request, ListQuery)
    where = ConversationFilter(
        application_id=query.application_id,
        mode=query.status,
        channel=query.channel,
        assignee_id=query.assignee_id,
        updated_since=query.updated_since,
    )
    page = await _queries(request).conversations(
        caller.workspace_id, where, limit=query.limit, cursor=query.cursor
    )
    return _page(page)


async def get_conversation(request: web.Request) -> web.Response:
    caller = await _operator(request)
    return _json(await _conversation(request, caller))


async def list_messages(request: web.Request) -> web.Response:
    caller = await _operator(request)
    query = parse_query(request, _Paged)
    page = await _queries(request).messages(
        request.match_info["id"], caller.workspace_id, limit=query.limit, cursor=query.cursor
    )
    return _page(page)


async def search_messages(request: web.Request) -> web.Response:
    caller = await _operator(request)
    query = parse_query(request, SearchQuery)
    found = await _queries(request).search(
        caller.workspace_id, query.q, limit=query.limit, application_id=query.application_id
    )
    return _json({"items": found})


async def _optional_body(request: web.Request) -> ModeBody:
    if not (await request.read()).strip():
        return ModeBody()
    return await parse_body(request, ModeBody)


async def _publish(
    request: web.Request,
    caller: Principal,
    conversation: Document,
    action: str,
    *,
    assignee_id: str = "",
    text: str = "",
) -> web.Response:
    """Publish ``action`` on ``conversation`` and answer 202 with the command id after the ack."""
    command = ConversationCommand(
        message_id=ids.new_id("cmd"),
        conversation_id=str(conversation["_id"]),
        workspace_id=caller.workspace_id,
        application_id=str(conversation.get("application_id", "")),
        channel=str(conversation.get("channel", "")),
        channel_id=str(conversation.get("channel_id", "")),
        chat_id=str(conversation.get("chat_id", "")),
        created_at=time.time(),
        action=action,
        operator_id=caller.user_id,
        assignee_id=assignee_id,
        text=text,
    )
    # Only after the broker's ack (acks="all"): an accepted command is never lost.
    await request.app[PRODUCER].send(COMMANDS_TOPIC, command.conversation_id, encode(command))
    return _json({"command_id": command.message_id, "action": action}, status=202)


async def _conversation(request: web.Request, caller: Principal) -> Document:
    """The conversation the path names, in the caller's workspace; NotFound (404) otherwise."""
    return await _queries(request).conversation(request.match_info["id"], caller.workspace_id)


def _mode_change(action: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        caller = await _operator(request)
        body = await _optional_body(request)
        conversation = await _conversation(request, caller)
        return await _publish(request, caller, conversation, action, text=body.reason)

    handler.__name__ = action
    return handler


async def assign(request: web.Request) -> web.Response:
    caller = await _operator(request)
    body = await parse_body(request, AssignBody)
    conversation = await _conversation(request, caller)  # a 404 before any word on the assignee
    if body.assignee_id is not None and not await _queries(request).is_member(
        body.assignee_id, caller.workspace_id
    ):
        raise ValidationFailed(
            "the assignee is not a member of this workspace",
            details=[{"field": "assignee_id", "message": "no such user in this workspace"}],
        )
    return await _publish(
        request, caller, conversation, "assign", assignee_id=body.assignee_id or ""
    )


async def reply(request: web.Request) -> web.Response:
    caller = await _operator(request)
    body = await parse_body(request, ReplyBody)
    conversation = await _conversation(request, caller)
    return await _publish(request, caller, conversation, "reply", text=body.text)


# --- the app ----------------------------------------------------------------------------------


async def _producer_ctx(app: web.Application) -> AsyncIterator[None]:
    producer = LazyProducer(app[SETTINGS])  # started later if Kafka is down now; /readyz says so
    app[PRODUCER] = producer
    await producer.start()
    yield
    await producer.stop()


def _operations() -> list[Operation]:
    tag = "conversations"
    command = (400, 401, 404, 422, 503)
    return [
        Operation("GET", "/api/conversations", "List conversations", tag, query=ListQuery,
                  errors=(401, 422)),
        Operation("GET", "/api/conversations/search", "Search messages", tag,
                  query=SearchQuery, errors=(401, 422)),
        Operation("GET", "/api/conversations/{id}", "A conversation", tag, errors=(401, 404)),
        Operation("GET", "/api/conversations/{id}/messages", "A conversation's messages", tag,
                  query=_Paged, errors=(401, 404, 422)),
        *(
            Operation("POST", f"/api/conversations/{{id}}/{action}", f"{action.title()} (202)",
                      tag, status=202, body=ModeBody, body_required=False, errors=command)
            for action in ("takeover", "release", "close")
        ),
        Operation("POST", "/api/conversations/{id}/assign", "Assign (202)", tag, status=202,
                  body=AssignBody, errors=command),
        Operation("POST", "/api/conversations/{id}/reply", "Reply as an operator (202)", tag,
                  status=202, body=ReplyBody, errors=command),
    ]  # fmt: skip


OPERATIONS = _operations()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "conversations", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    app.cleanup_ctx.append(_producer_ctx)
    router = app.router
    router.add_get(PREFIX, list_conversations)
    router.add_get(f"{PREFIX}/search", search_messages)  # before {id}, which would match it
    router.add_get(f"{PREFIX}/{{id}}", get_conversation)
    router.add_get(f"{PREFIX}/{{id}}/messages", list_messages)
    for action in ("takeover", "release", "close"):
        router.add_post(f"{PREFIX}/{{id}}/{action}", _mode_change(action))
    router.add_post(f"{PREFIX}/{{id}}/assign", assign)
    router.add_post(f"{PREFIX}/{{id}}/reply", reply)
    return app
