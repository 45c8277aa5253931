"""The applications service: applications, their API keys, and new conversations for the pipeline.

Operators (JWT) manage applications and keys; agents may read them, owners and admins change
them (a new widget key too: the old one stops working at once). Every operator may block a
widget visitor of the workspace's applications, whose visitor token is then refused. A server
(``X-Api-Key``) opens a conversation on the ``api`` channel, whose channel id is the
application's id, maybe with its first message: the handler only produces a record, and the
message-process agent creates the conversation as it does for every channel. Every change to an
application invalidates the config the pipeline caches (``core.cached.applications``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import Field, field_validator

from core import ids
from core.cached.applications import ApplicationDirectory
from core.channels.base import NormalizedMessage
from core.clients.database import Document, database
from core.clients.producer import LazyProducer
from core.errors import Unauthorized
from core.security.tokens import TokenService
from core.settings import Settings
from core.stores.application_store import ApplicationNotFound, ApplicationStore
from core.stores.blocked_visitors import VISITOR_ID, BlockedVisitors
from core.stores.conversation_store import ConversationStore
from streams.contract import API_CHANNEL, CONVERSATION_COMMANDS, MESSAGES_INBOUND
from streams.inbound import Origin, inbound_record
from streams.records import ConversationCommand, encode
from web.auth import TOKENS, principal
from web.health import Dependency
from web.keys import MONGO, PRODUCER, REDIS, SETTINGS
from web.openapi import API_KEY, Operation
from web.service import service_app
from web.validation import StrictBody, not_null, parse_body

log = logging.getLogger(__name__)

DEPENDENCIES = (Dependency.MONGODB, Dependency.REDIS, Dependency.KAFKA)
API_KEY_HEADER = "X-Api-Key"

Name = Field(min_length=1, max_length=200)


class Budget(StrictBody):
    """What the application may use, over the platform's defaults; null keeps the default.
    Widget messages a minute over all visitors (the workspace's limit still applies), and
    model tokens a day (read by the AI stage)."""

    messages_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    tokens_per_day: int | None = Field(default=None, ge=0, le=1_000_000_000)


class ApplicationCreate(StrictBody):
    name: str = Name
    prompt: str = Field(default="", max_length=20_000)
    chatbot_id: str | None = Field(default=None, min_length=1, max_length=100)
    welcome_message: str = Field(default="", max_length=2_000)
    budget: Budget | None = None


class ApplicationPatch(StrictBody):
    """Only the fields sent change; ``chatbot_id: null`` unlinks the chatbot."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    prompt: str | None = Field(default=None, max_length=20_000)
    chatbot_id: str | None = Field(default=None, min_length=1, max_length=100)
    welcome_message: str | None = Field(default=None, max_length=2_000)
    #: Replaces the whole budget; null returns to the platform's defaults.
    budget: Budget | None = None

    _present = field_validator("name", "prompt", "welcome_message")(not_null)


class VisitorBlock(StrictBody):
    visitor_id: str = Field(pattern=VISITOR_ID.pattern, max_length=40)


class KeyCreate(StrictBody):
    name: str = Field(default="", max_length=200)


class NewConversation(StrictBody):
    external_user_id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=16_000)
    #: The client's id for ``text``: a retried request with the same id posts the message once.
    message_id: str | None = Field(default=None, min_length=1, max_length=200)


def _application_view(document: Document) -> Document:
    return {
        "id": document["_id"],
        "name": document.get("name", ""),
        "prompt": document.get("prompt", ""),
        "chatbot_id": document.get("chatbot_id"),
        "welcome_message": document.get("welcome_message", ""),
        "widget_key": document.get("widget_key"),
        "budget": Budget.model_validate(document.get("budget") or {}).model_dump(),
        "created_at": document.get("created_at"),
        "updated_at": document.get("updated_at"),
    }


def _key_view(document: Document) -> Document:
    return {
        "id": document["_id"],
        "application_id": document["application_id"],
        "name": document.get("name", ""),
        "prefix": document.get("prefix"),
        "created_at": document.get("created_at"),
        "revoked_at": document.get("revoked_at"),
    }


def _blocked_view(document: Document) -> Document:
    return {
        "visitor_id": document["visitor_id"],
        "application_id": document["application_id"],
        "blocked_by": document.get("blocked_by"),
        "blocked_at": document.get("blocked_at"),
    }


def _store(request: web.Request) -> ApplicationStore:
    return ApplicationStore(database(request.app[MONGO], request.app[SETTINGS]))


def _blocked(request: web.Request) -> BlockedVisitors:
    settings = request.app[SETTINGS]
    db = database(request.app[MONGO], settings)
    return BlockedVisitors(db, request.app[REDIS], settings.visitor_token_ttl_s)


async def _invalidate(request: web.Request, application_id: str) -> None:
    db = database(request.app[MONGO], request.app[SETTINGS])
    await ApplicationDirectory(db, request.app[REDIS], local_ttl_s=0).invalidate(application_id)


async def list_applications(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await _store(request).of_workspace(caller.workspace_id)
    return web.json_response({"applications": [_application_view(d) for d in found]})


async def create_application(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ApplicationCreate)
    created = await _store(request).create(caller.workspace_id, body.model_dump())
    return web.json_response(_application_view(created), status=201)


async def get_application(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await _store(request).get(caller.workspace_id, request.match_info["id"])
    return web.json_response(_application_view(found))


async def update_application(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, ApplicationPatch)
    application_id = request.match_info["id"]
    updated = await _store(request).update(
        caller.workspace_id, application_id, body.model_dump(exclude_unset=True)
    )
    await _invalidate(request, application_id)
    return web.json_response(_application_view(updated))


async def delete_application(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    application_id = request.match_info["id"]
    await _store(request).delete(caller.workspace_id, application_id)
    await _invalidate(request, application_id)
    await _blocked(request).forget_application(caller.workspace_id, application_id)
    return web.Response(status=204)


async def rotate_widget_key(request: web.Request) -> web.Response:
    """A new widget key. The socket service checks a key against the application's current one
    on every connect and message, so the old key is refused from now on, open chats included."""
    caller = await principal(request)
    caller.require_configurer()
    application_id = request.match_info["id"]
    rotated = await _store(request).rotate_widget_key(caller.workspace_id, application_id)
    await _invalidate(request, application_id)
    return web.json_response(_application_view(rotated))


async def list_blocked_visitors(request: web.Request) -> web.Response:
    caller = await principal(request)
    application_id = request.match_info["id"]
    await _store(request).get(caller.workspace_id, application_id)
    found = await _blocked(request).of_application(caller.workspace_id, application_id)
    return web.json_response({"blocked_visitors": [_blocked_view(d) for d in found]})


async def block_visitor(request: web.Request) -> web.Response:
    caller = await principal(request)
    application_id = request.match_info["id"]
    await _store(request).get(caller.workspace_id, application_id)
    body = await parse_body(request, VisitorBlock)
    blocked = await _blocked(request).block(
        caller.workspace_id, application_id, body.visitor_id, caller.user_id
    )
    return web.json_response(_blocked_view(blocked), status=201)


async def unblock_visitor(request: web.Request) -> web.Response:
    caller = await principal(request)
    application_id = request.match_info["id"]
    await _store(request).get(caller.workspace_id, application_id)
    await _blocked(request).unblock(
        caller.workspace_id, application_id, request.match_info["visitor_id"]
    )
    return web.Response(status=204)


async def list_keys(request: web.Request) -> web.Response:
    caller = await principal(request)
    found = await _store(request).keys(caller.workspace_id, request.match_info["id"])
    return web.json_response({"keys": [_key_view(d) for d in found]})


async def create_key(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    body = await parse_body(request, KeyCreate)
    document, key = await _store(request).create_key(
        caller.workspace_id, request.match_info["id"], body.name
    )
    # The only time the key is shown: only its hash is stored.
    return web.json_response({**_key_view(document), "key": key}, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    caller = await principal(request)
    caller.require_configurer()
    await _store(request).revoke_key(
        caller.workspace_id, request.match_info["id"], request.match_info["key_id"]
    )
    return web.Response(status=204)


async def new_conversation(request: web.Request) -> web.Response:
    """Open (or find) the conversation of ``external_user_id``, maybe posting ``text`` into it.

    One record goes to the pipeline, whose message-process agent creates the conversation: the
    first message (``messages.inbound``), or without one an ``open`` command
    (``conversation.commands``). Answered 202 once the broker has it, with the conversation's
    id, which is deterministic; the conversation is readable once the agent has taken the record.
    """
    store = _store(request)
    application_id = request.match_info["id"]
    key = await store.live_key(request.headers.get(API_KEY_HEADER, "").strip())
    if key is None:
        raise Unauthorized(f"send a live API key of this application in {API_KEY_HEADER}")
    if key["application_id"] != application_id:
        # Another application's key learns nothing about this one, not even that it exists.
        raise ApplicationNotFound(f"application {application_id} does not exist")
    workspace_id = str(key["workspace_id"])
    await store.get(workspace_id, application_id)
    body = await parse_body(request, NewConversation)
    producer = request.app[PRODUCER]
    await producer.ready()  # Kafka down: refused (503) before anything is produced
    chat_id = body.external_user_id
    conversation_id = ids.conversation_id(API_CHANNEL, application_id, chat_id)
    envelope: dict[str, Any] = {
        "conversation_id": conversation_id,
        "workspace_id": workspace_id,
        "application_id": application_id,
        "channel": API_CHANNEL,
        "channel_id": application_id,
        "chat_id": chat_id,
        "created_at": time.time(),
        "trace_id": uuid.uuid4().hex,
    }
    db = database(request.app[MONGO], request.app[SETTINGS])
    known = await ConversationStore(db).conversation(conversation_id, workspace_id) is not None
    answer: Document = {
        "conversation_id": conversation_id,
        "application_id": application_id,
        "channel": API_CHANNEL,
        "chat_id": chat_id,
        "created": not known,  # as far as the database knew when the request was accepted
    }
    if body.text is not None:
        origin = Origin(workspace_id, application_id, API_CHANNEL, application_id)
        said = NormalizedMessage(
            chat_id=chat_id,
            external_id=body.message_id or uuid.uuid4().hex,
            sender_id=chat_id,
            text=body.text,
            sender_name=body.name or "",
        )
        message = inbound_record(origin, said, trace_id=envelope["trace_id"])
        await producer.send(MESSAGES_INBOUND, conversation_id, encode(message))
        answer["message_id"] = message.message_id
    elif not known:
        opened = ConversationCommand(
            **envelope, message_id=ids.new_id("cmd"), action="open", contact_name=body.name or ""
        )
        await producer.send(CONVERSATION_COMMANDS, conversation_id, encode(opened))
    return web.json_response(answer, status=202)


async def _producer_ctx(app: web.Application) -> AsyncIterator[None]:
    producer = LazyProducer(app[SETTINGS])
    app[PRODUCER] = producer
    await producer.start()
    yield
    await producer.stop()


async def _indexes_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = database(app[MONGO], settings)
    try:
        await ApplicationStore(db).ensure_indexes()
        await BlockedVisitors(db, app[REDIS], settings.visitor_token_ttl_s).ensure_indexes()
    except Exception as error:  # the service starts while MongoDB is down; /readyz says so
        log.warning("could not ensure the applications indexes: %s", error)
    yield


NEW_CONVERSATION = (
    "Accepted once Kafka has the request (202), with the conversation's id, which is the same "
    "for every request about one `external_user_id`. The pipeline creates the conversation "
    "(announced once as `conversation.created`) and stores `text` as its first message: both "
    "are readable through `/api/conversations` a moment later, not at once. `created` is false "
    "when the conversation already existed as the request was accepted. A repeated request "
    "opens nothing twice, and one with the same `message_id` posts its message once."
)


NEW_WIDGET_KEY = (
    "The answer is the application with its new `widget_key`. The old key is refused from now "
    "on, on every socket instance: new connections with `bad_key`, open chats on their next "
    "message (then disconnected). Pages embedding the old key must be given the new one."
)

BLOCK_VISITOR = (
    "Any operator of the workspace may block a visitor (the `chat_id` of a `web` "
    "conversation). Their visitor token is refused from now on (`blocked`), open chats on "
    "their next message. Blocking again changes nothing. A blocked visitor who drops their "
    "token comes back as a new visitor, as anyone may: only the widget's per-address connect "
    "rate bounds that."
)


def _operations() -> list[Operation]:
    tag = "applications"
    writes = (400, 401, 403, 404, 422)
    return [
        Operation("GET", "/api/apps", "List applications", tag, errors=(401,)),
        Operation("POST", "/api/apps", "Create an application", tag, status=201,
                  body=ApplicationCreate, errors=writes),
        Operation("GET", "/api/apps/{id}", "An application", tag, errors=(401, 404)),
        Operation("PATCH", "/api/apps/{id}", "Change an application", tag,
                  body=ApplicationPatch, errors=writes),
        Operation("DELETE", "/api/apps/{id}", "Delete an application", tag, status=204,
                  errors=(401, 403, 404)),
        Operation("GET", "/api/apps/{id}/keys", "An application's API keys (no secrets)", tag,
                  errors=(401, 404)),
        Operation("POST", "/api/apps/{id}/keys", "Create an API key, shown once", tag,
                  status=201, body=KeyCreate, errors=writes),
        Operation("DELETE", "/api/apps/{id}/keys/{key_id}", "Revoke an API key", tag,
                  status=204, errors=(401, 403, 404)),
        Operation("POST", "/api/apps/{id}/widget-key", "Give the application a new widget key",
                  tag, errors=(401, 403, 404), description=NEW_WIDGET_KEY),
        Operation("GET", "/api/apps/{id}/blocked-visitors", "The widget visitors blocked", tag,
                  errors=(401, 404)),
        Operation("POST", "/api/apps/{id}/blocked-visitors", "Block a widget visitor", tag,
                  status=201, body=VisitorBlock, errors=(400, 401, 404, 422),
                  description=BLOCK_VISITOR),
        Operation("DELETE", "/api/apps/{id}/blocked-visitors/{visitor_id}",
                  "Unblock a widget visitor", tag, status=204, errors=(401, 404)),
        Operation("POST", "/api/apps/{id}/conversations",
                  "Start a conversation (server to server), maybe with its first message", tag,
                  status=202, body=NewConversation, errors=(400, 401, 404, 422, 503),
                  security=API_KEY, description=NEW_CONVERSATION),
    ]  # fmt: skip


OPERATIONS = _operations()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, "applications", DEPENDENCIES)
    app[TOKENS] = TokenService(settings)
    app.cleanup_ctx.extend([_indexes_ctx, _producer_ctx])
    app.router.add_get("/api/apps", list_applications)
    app.router.add_post("/api/apps", create_application)
    app.router.add_get("/api/apps/{id}", get_application)
    app.router.add_patch("/api/apps/{id}", update_application)
    app.router.add_delete("/api/apps/{id}", delete_application)
    app.router.add_get("/api/apps/{id}/keys", list_keys)
    app.router.add_post("/api/apps/{id}/keys", create_key)
    app.router.add_delete("/api/apps/{id}/keys/{key_id}", revoke_key)
    app.router.add_post("/api/apps/{id}/widget-key", rotate_widget_key)
    app.router.add_get("/api/apps/{id}/blocked-visitors", list_blocked_visitors)
    app.router.add_post("/api/apps/{id}/blocked-visitors", block_visitor)
    app.router.add_delete("/api/apps/{id}/blocked-visitors/{visitor_id}", unblock_visitor)
    app.router.add_post("/api/apps/{id}/conversations", new_conversation)
    return app
