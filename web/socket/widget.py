"""The ``/widget`` namespace: end users' web chat (docs/realtime.md).

A visitor is who the visitor token says, to the application whose public key the client sent;
their conversation id follows from both, as a platform chat's does. A message is acked only
once Kafka has it, so a client that saw no ack sends it again under the same id, and that id
maps to the same message id: the pipeline stores and answers it once.

The key is public and every message costs a model call, so a connect counts against its client
address (a connect without a token is a new visitor), and a message against its visitor, its
application and its workspace (``core.security.rate_limits``); operators see a budget hit once
per window as a ``budget.exceeded`` event. Every message also checks that the key is still the
application's and that the visitor is not blocked: a replaced key or a block ends open chats.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import socketio
from aiohttp import web
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from core import ids
from core.channels.base import NormalizedMessage
from core.clients.database import Document
from core.clients.realtime import INBOX_NAMESPACE, WIDGET_NAMESPACE, conversation_room
from core.errors import DependencyUnavailable, Unauthorized
from core.security.rate_limits import Limit, Refusal
from core.security.throttle_keys import address_bucket
from core.security.tokens import TokenExpired
from core.settings import Settings
from core.stores.application_store import WIDGET_KEY
from core.stores.recent_messages import widget_view
from streams.contract import CONVERSATION_EVENTS, MESSAGES_INBOUND, WEB_CHANNEL
from streams.inbound import Origin, inbound_record
from streams.records import ConversationEvent, InboundMessage, encode
from web.client_address import forwarded_client
from web.socket.deps import SOCKET_DEPS, Refused, SocketDeps, failure
from web.socket.typing_relay import IDLE, relayed

log = logging.getLogger(__name__)

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TEXT = 4000
HISTORY_LIMIT = 200
#: How long a sent client id is remembered, so a late retry is still recognised.
SENT_TTL_S = 7 * 24 * 3600
RATE_WINDOW_S = 60
BUDGET_EXCEEDED = "budget.exceeded"
#: Left to a refused message's ack before its socket is closed.
DISCONNECT_AFTER_S = 0.2


def sent_key(message_id: str) -> str:
    return f"widget:sent:{message_id}"


def message_view(document: Document) -> dict[str, Any]:
    """A stored message as the widget shows it."""
    return widget_view(
        document["_id"],
        document["conversation_id"],
        document.get("role", "user"),
        document.get("text", ""),
        document.get("created_at"),
        document.get("request_id", ""),
    )


class WidgetNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, app: web.Application) -> None:
        super().__init__(WIDGET_NAMESPACE)
        self._app = app

    @property
    def deps(self) -> SocketDeps:
        return self._app[SOCKET_DEPS]

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        key = auth.get("key")
        if not isinstance(key, str) or not key:
            raise Refused("bad_key", "connect with auth {key: <the application's widget key>}")
        if not WIDGET_KEY.fullmatch(key):  # refused before any lookup
            raise Refused("bad_key", "no application has this widget key")
        try:
            await self._count_connect(environ)
            application = await self.deps.widget_keys.application(key)
        except (PyMongoError, RedisError, OSError) as error:
            log.warning("widget connect: a dependency failed: %s", error)
            raise Refused("unavailable", "the chat is unavailable right now; retry") from error
        if application is None:
            raise Refused("bad_key", "no application has this widget key")
        application_id = str(application["_id"])
        token = auth.get("token")
        returning = token is not None
        visitor_id = self._visitor(token, application_id) if returning else new_visitor_id()
        if returning:
            await self._refuse_blocked(application_id, visitor_id)
        conversation_id = ids.conversation_id(WEB_CHANNEL, application_id, visitor_id)
        await self.save_session(
            sid,
            {
                "visitor_id": visitor_id,
                "application_id": application_id,
                "workspace_id": str(application["workspace_id"]),
                "conversation_id": conversation_id,
                "key": key,
                "typing": IDLE,
            },
        )
        await self.enter_room(sid, conversation_room(conversation_id))
        last_id = auth.get("last_id")
        # After this handler returns the client is connected; events sent before would be lost.
        self.server.start_background_task(
            self._welcome,
            sid,
            visitor_id,
            application_id,
            conversation_id,
            returning,
            last_id if isinstance(last_id, str) else None,
            str(application.get("welcome_message") or ""),
        )

    async def _count_connect(self, environ: dict[str, Any]) -> None:
        """Refuse a client address over its connects a minute: without a token each connect is a
        new visitor, with a fresh message allowance."""
        settings = self.deps.settings
        bucket = address_bucket(client_address_of(environ, settings))
        limit = Limit(f"widget:connect:{bucket}", settings.widget_connects_per_minute, 60)
        refused = await self.deps.limits.take([limit])
        if refused is not None:
            wait_s = refused.retry_after_s
            raise Refused(
                "rate_limited", f"too many connections; retry in {wait_s} s", retry_after_s=wait_s
            )

    async def _refuse_blocked(self, application_id: str, visitor_id: str) -> None:
        try:
            blocked = await self.deps.blocked.is_blocked(application_id, visitor_id)
        except (RedisError, OSError) as error:
            raise Refused("unavailable", "the chat is unavailable right now; retry") from error
        if blocked:
            raise Refused("blocked", "this chat is not available to this visitor")

    def _visitor(self, token: object, application_id: str) -> str:
        if not isinstance(token, str):
            raise Refused("bad_token", "the visitor token is not valid")
        try:
            claims = self.deps.tokens.read_visitor(token)
        except TokenExpired as error:
            raise Refused("token_expired", "the visitor token has expired") from error
        except Unauthorized as error:
            raise Refused("bad_token", "the visitor token is not valid") from error
        if claims.application_id != application_id:
            raise Refused("bad_token", "the visitor token is not valid")
        return claims.visitor_id

    async def _welcome(
        self,
        sid: str,
        visitor_id: str,
        application_id: str,
        conversation_id: str,
        returning: bool,
        last_id: str | None,
        welcome_message: str,
    ) -> None:
        session = {
            "token": self.deps.tokens.visitor_token(visitor_id, application_id),
            "visitor_id": visitor_id,
            "conversation_id": conversation_id,
            "application_id": application_id,
            "welcome_message": welcome_message,
        }
        await self.emit("session", session, to=sid, ignore_queue=True)
        history: dict[str, Any] = {"messages": []}
        if returning:  # a new visitor has no conversation yet: nothing to read
            try:
                history["messages"] = await self._missed(conversation_id, last_id)
            except (PyMongoError, RedisError, OSError) as error:
                log.warning("widget catch-up of %s failed: %s", conversation_id, error)
                history["error"] = {"code": "unavailable", "message": "history is unavailable"}
        await self.emit("history", history, to=sid, ignore_queue=True)

    async def _missed(self, conversation_id: str, last_id: str | None) -> list[dict[str, Any]]:
        recent = await self.deps.recent.after(conversation_id, last_id)
        if recent is not None:
            return recent
        if await self.deps.conversations.find(conversation_id) is None:
            return []  # nothing stored yet (a lookup by id: quick, where a query is not)
        found = await self.deps.conversations.catch_up(
            conversation_id, last_id, limit=HISTORY_LIMIT
        )
        return [message_view(m) for m in found]

    async def on_message(self, sid: str, data: Any = None) -> dict[str, Any]:
        if not isinstance(data, dict):
            return failure("invalid", "send {id, text}")
        client_id, text = data.get("id"), data.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
            return failure("invalid", "id must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return failure("invalid", f"text must be 1-{MAX_TEXT} characters, not blank")
        visitor = await self.get_session(sid)
        message = inbound_message(visitor, client_id, text)
        try:
            application, ended = await self._still_allowed(visitor)
            if ended is not None:
                self.server.start_background_task(self._disconnect_soon, sid)
                return ended
            if await self.deps.redis.exists(sent_key(message.message_id)):
                return {"ok": True, "message_id": message.message_id, "duplicate": True}
            refused = await self.deps.limits.take(budgets(self.deps.settings, visitor, application))
            if refused is not None:
                await self._announce(refused, message)
                wait_s = refused.retry_after_s
                limited = failure("rate_limited", f"too many messages; retry in {wait_s} s")
                return {**limited, "retry_after_s": wait_s}
            await self.deps.producer.send(
                MESSAGES_INBOUND, message.conversation_id, encode(message)
            )
            await self.deps.redis.set(sent_key(message.message_id), "1", ex=SENT_TTL_S)
        except (DependencyUnavailable, PyMongoError, RedisError, OSError) as error:
            log.warning("widget message %s not taken: %s", message.message_id, error)
            return failure("unavailable", "the message was not sent; retry with the same id")
        await self._show(sid, message)
        return {"ok": True, "message_id": message.message_id, "duplicate": False}

    async def _still_allowed(
        self, visitor: dict[str, Any]
    ) -> tuple[Document, dict[str, Any] | None]:
        """The visitor's application; or the failure that ends their chat: the key was replaced
        (or the application deleted), or the visitor was blocked."""
        application = await self.deps.widget_keys.application(visitor["key"])
        if application is None or str(application["_id"]) != visitor["application_id"]:
            return {}, failure("bad_key", "this chat's widget key is no longer valid")
        if await self.deps.blocked.is_blocked(visitor["application_id"], visitor["visitor_id"]):
            return {}, failure("blocked", "this chat is not available to this visitor")
        return application, None

    async def _disconnect_soon(self, sid: str) -> None:
        await asyncio.sleep(DISCONNECT_AFTER_S)  # the refusal's ack goes first
        await self.disconnect(sid)

    async def _announce(self, refused: Refusal, message: InboundMessage) -> None:
        """A ``budget.exceeded`` event for operators, once per window of the full limit and per
        conversation (or per application or workspace: many fresh visitors make one event)."""
        scope = refused.limit.key.split(":")[2]
        notice = f"widget:budget:notice:{refused.limit.key}"
        try:
            if not await self.deps.redis.set(notice, "1", nx=True, ex=refused.retry_after_s):
                return
            event = ConversationEvent(
                **message.envelope(ids.event_id(message.message_id, BUDGET_EXCEEDED), time.time()),
                type=BUDGET_EXCEEDED,
                subject_id=message.message_id,
                data={
                    "budget": "messages_per_minute",
                    "scope": scope,
                    "limit": refused.limit.limit,
                    "retry_after_s": refused.retry_after_s,
                },
            )
            await self.deps.producer.send(
                CONVERSATION_EVENTS, message.conversation_id, encode(event)
            )
        except (DependencyUnavailable, RedisError, OSError) as error:
            log.warning("budget event for %s not sent: %s", message.conversation_id, error)

    async def _show(self, sid: str, message: InboundMessage) -> None:
        """Log the visitor's message for catch-up and show it in their other tabs."""
        view = widget_view(
            message.message_id, message.conversation_id, "user", message.text, message.created_at
        )
        room = conversation_room(message.conversation_id)
        try:
            await self.deps.recent.append(message.conversation_id, [view])
            await self.emit("message", view, room=room, skip_sid=sid)
        except (RedisError, OSError) as error:  # the message is in; catch-up reads MongoDB
            log.warning("widget echo of %s failed: %s", message.message_id, error)

    async def on_typing(self, sid: str, data: Any = None) -> None:
        typing = bool(data.get("typing")) if isinstance(data, dict) else False
        async with self.session(sid) as visitor:
            state = relayed(visitor["typing"], typing, time.monotonic())
            if state is None:
                return
            visitor["typing"] = state
            conversation_id = visitor["conversation_id"]
        await self._relay_typing(conversation_id, typing)

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        """A visitor who leaves while shown as typing is shown as not typing."""
        try:
            visitor = await self.get_session(sid)
        except KeyError:
            return
        if visitor.get("typing", IDLE)[0]:
            await self._relay_typing(visitor["conversation_id"], False)

    async def _relay_typing(self, conversation_id: str, typing: bool) -> None:
        try:
            await self.server.emit(
                "typing",
                {"conversation_id": conversation_id, "role": "visitor", "typing": typing},
                room=conversation_room(conversation_id),
                namespace=INBOX_NAMESPACE,
            )
        except (RedisError, OSError) as error:
            log.warning("typing relay failed: %s", error)


def client_address_of(environ: dict[str, Any], settings: Settings) -> str:
    """The client's address: the peer, or what a trusted proxy says (``web.client_address``)."""
    request = environ.get("aiohttp.request")
    if isinstance(request, web.Request):
        peer = request.remote or "unknown"
        return forwarded_client(peer, request.headers.get("X-Forwarded-For", ""), settings)
    return str(environ.get("REMOTE_ADDR") or "unknown")


def budgets(settings: Settings, visitor: dict[str, Any], application: Document) -> list[Limit]:
    """A visitor's message counts against them, their application and its workspace; an
    application's ``budget.messages_per_minute`` replaces the platform's default."""
    budget = application.get("budget") or {}
    per_application = budget.get("messages_per_minute") or settings.application_messages_per_minute
    return [
        Limit(f"widget:rate:visitor:{visitor['visitor_id']}",
              settings.widget_messages_per_minute, RATE_WINDOW_S),
        Limit(f"widget:rate:application:{application['_id']}", per_application, RATE_WINDOW_S),
        Limit(f"widget:rate:workspace:{application['workspace_id']}",
              settings.workspace_messages_per_minute, RATE_WINDOW_S),
    ]  # fmt: skip


def new_visitor_id() -> str:
    return "v_" + uuid.uuid4().hex


def inbound_message(visitor: dict[str, Any], client_id: str, text: str) -> InboundMessage:
    application_id = visitor["application_id"]
    origin = Origin(visitor["workspace_id"], application_id, WEB_CHANNEL, application_id)
    visitor_id = visitor["visitor_id"]
    return inbound_record(origin, NormalizedMessage(visitor_id, client_id, visitor_id, text))
