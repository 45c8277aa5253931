"""The ``/widget`` namespace: end users' web chat (docs/realtime.md).

A visitor is who the visitor token says, to the application whose public key the client sent;
their conversation id follows from both, as a platform chat's does. A message is acked only
once Kafka has it, so a client that saw no ack sends it again under the same id, and that id
maps to the same message id: the pipeline stores and answers it once.
"""

from __future__ import annotations

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
from core.clients.database import Document
from core.clients.realtime import INBOX_NAMESPACE, WIDGET_NAMESPACE, conversation_room
from core.errors import DependencyUnavailable, Unauthorized
from core.security.tokens import TokenExpired
from core.stores.recent_messages import widget_view
from streams.contract import MESSAGES_INBOUND, WEB_CHANNEL
from streams.records import InboundMessage, encode
from web.socket.deps import SOCKET_DEPS, Refused, SocketDeps, failure

log = logging.getLogger(__name__)

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TEXT = 4000
HISTORY_LIMIT = 200
#: How long a sent client id is remembered, so a late retry is still recognised.
SENT_TTL_S = 7 * 24 * 3600
RATE_WINDOW_S = 60
#: At most one typing relay per client in this interval.
TYPING_EVERY_S = 1.0


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
        try:
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
        conversation_id = ids.conversation_id(WEB_CHANNEL, application_id, visitor_id)
        await self.save_session(
            sid,
            {
                "visitor_id": visitor_id,
                "application_id": application_id,
                "workspace_id": str(application["workspace_id"]),
                "conversation_id": conversation_id,
                "typing_at": 0.0,
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
            if await self.deps.redis.exists(sent_key(message.message_id)):
                return {"ok": True, "message_id": message.message_id, "duplicate": True}
            wait_s = await self._over_rate(visitor["visitor_id"])
            if wait_s:
                refused = failure("rate_limited", f"too many messages; retry in {wait_s} s")
                return {**refused, "retry_after_s": wait_s}
            await self.deps.producer.send(
                MESSAGES_INBOUND, message.conversation_id, encode(message)
            )
            await self.deps.redis.set(sent_key(message.message_id), "1", ex=SENT_TTL_S)
        except (DependencyUnavailable, RedisError, OSError) as error:
            log.warning("widget message %s not taken: %s", message.message_id, error)
            return failure("unavailable", "the message was not sent; retry with the same id")
        await self._show(sid, message)
        return {"ok": True, "message_id": message.message_id, "duplicate": False}

    async def _over_rate(self, visitor_id: str) -> int:
        """Seconds until this visitor may send again, 0 if now: the widget's key is public, and
        every message costs a model call. A fixed window per minute, counted in Redis so that
        the visitor's tabs on every instance share it."""
        now = time.time()
        window = int(now // RATE_WINDOW_S)
        key = f"widget:rate:{visitor_id}:{window}"
        async with self.deps.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, RATE_WINDOW_S * 2)
            sent, _ = await pipe.execute()
        if int(sent) <= self.deps.settings.widget_messages_per_minute:
            return 0
        return max(1, int((window + 1) * RATE_WINDOW_S - now))

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
            now = time.monotonic()
            if typing and now - visitor["typing_at"] < TYPING_EVERY_S:
                return
            visitor["typing_at"] = now if typing else 0.0
            conversation_id = visitor["conversation_id"]
        try:
            await self.server.emit(
                "typing",
                {"conversation_id": conversation_id, "role": "visitor", "typing": typing},
                room=conversation_room(conversation_id),
                namespace=INBOX_NAMESPACE,
            )
        except (RedisError, OSError) as error:
            log.warning("typing relay failed: %s", error)


def new_visitor_id() -> str:
    return "v_" + uuid.uuid4().hex


def inbound_message(visitor: dict[str, Any], client_id: str, text: str) -> InboundMessage:
    application_id = visitor["application_id"]
    visitor_id = visitor["visitor_id"]
    return InboundMessage(
        message_id=ids.inbound_message_id(WEB_CHANNEL, application_id, visitor_id, client_id),
        conversation_id=visitor["conversation_id"],
        workspace_id=visitor["workspace_id"],
        application_id=application_id,
        channel=WEB_CHANNEL,
        channel_id=application_id,
        chat_id=visitor_id,
        created_at=time.time(),
        trace_id=uuid.uuid4().hex,
        external_id=client_id,
        sender_id=visitor_id,
        text=text,
    )
