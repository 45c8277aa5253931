"""The ``/inbox`` namespace: operators' live feed (docs/realtime.md).

An operator connects with the REST API's access token and is put in their workspace's room; the
feed (``web.socket.event_feed``) pushes each conversation event to the rooms of its workspace,
application and conversation. Joining an application's or a conversation's room is checked
against the operator's workspace: another workspace's id is as unknown as a missing one. A
connection ends when its access token expires, so signing out takes effect within a token's
lifetime (15 minutes by default) on live connections too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import socketio
from aiohttp import web
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from core.clients.realtime import INBOX_NAMESPACE, WIDGET_NAMESPACE, conversation_room
from core.errors import NotFound, Unauthorized
from web.auth import ROLES, revoked_session_key
from web.socket.deps import SOCKET_DEPS, Refused, SocketDeps, failure
from web.socket.event_feed import application_room, workspace_room
from web.socket.typing_relay import IDLE, TYPING_EVERY_S, State, relayed

log = logging.getLogger(__name__)

#: Conversations an operator's connection keeps typing state for; idle ones go first.
MAX_TYPING_CONVERSATIONS = 100
#: Conversations not yet typed in that one connection may check in an interval (each a lookup).
MAX_TYPING_CHECKS = 5


class InboxNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, app: web.Application) -> None:
        super().__init__(INBOX_NAMESPACE)
        self._app = app

    @property
    def deps(self) -> SocketDeps:
        return self._app[SOCKET_DEPS]

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Refused("unauthorized", "connect with auth {token: <access token>}")
        try:
            claims = self.deps.tokens.read_access(token)
        except Unauthorized as error:
            raise Refused("unauthorized", error.message) from error
        if claims.role not in ROLES or not claims.workspace_id or not claims.session_id:
            raise Refused("unauthorized", "the token is not valid")
        try:
            revoked = await self.deps.redis.exists(revoked_session_key(claims.session_id))
        except (RedisError, OSError) as error:
            raise Refused("unavailable", "the inbox is unavailable right now; retry") from error
        if revoked:
            raise Refused("unauthorized", "this session has signed out")
        operator = {
            "user_id": claims.user_id,
            "workspace_id": claims.workspace_id,
            "role": claims.role,
            "typing": {},
            "typing_checks": (0.0, 0),
        }
        await self.save_session(sid, operator)
        await self.enter_room(sid, workspace_room(claims.workspace_id))
        self.server.start_background_task(
            self.emit,
            "session",
            {k: operator[k] for k in ("user_id", "workspace_id", "role")},
            to=sid,
            ignore_queue=True,
        )
        self.server.start_background_task(self._end_with_token, sid, claims.expires_at)

    async def _end_with_token(self, sid: str, expires_at: float) -> None:
        """Disconnect when the access token expires: the client connects again with a fresh
        one, and a session signed out in the meantime is refused then."""
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        expired = {"code": "token_expired", "message": "connect again with a fresh access token"}
        await self.emit("session.expired", expired, to=sid, ignore_queue=True)
        await self.disconnect(sid)

    async def on_join(self, sid: str, data: Any = None) -> dict[str, Any]:
        room = await self._room(sid, data)
        if isinstance(room, dict):
            return room
        await self.enter_room(sid, room)
        return {"ok": True}

    async def on_leave(self, sid: str, data: Any = None) -> dict[str, Any]:
        room = await self._room(sid, data)
        if isinstance(room, dict):
            return room
        await self.leave_room(sid, room)
        return {"ok": True}

    async def _room(self, sid: str, data: Any) -> str | dict[str, Any]:
        """The room ``data`` names, checked against the operator's workspace; else a failure."""
        if not isinstance(data, dict):
            return failure("invalid", "send {conversation_id} or {application_id}")
        workspace_id = (await self.get_session(sid))["workspace_id"]
        conversation_id, application_id = data.get("conversation_id"), data.get("application_id")
        try:
            if isinstance(conversation_id, str) and conversation_id:
                if not await self._owns_conversation(workspace_id, conversation_id):
                    return failure("not_found", f"conversation {conversation_id} does not exist")
                return conversation_room(conversation_id)
            if isinstance(application_id, str) and application_id:
                await self.deps.applications.get(workspace_id, application_id)
                return application_room(application_id)
        except NotFound as error:
            return failure("not_found", error.message)
        except (PyMongoError, OSError):
            return failure("unavailable", "the inbox is unavailable right now; retry")
        return failure("invalid", "send {conversation_id} or {application_id}")

    async def _owns_conversation(self, workspace_id: str, conversation_id: str) -> bool:
        found = await self.deps.conversations.conversation(conversation_id, workspace_id)
        return found is not None

    async def on_typing(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Relay an operator's typing to the widget, throttled as ``web.socket.typing_relay``
        says; a conversation not typed in before is checked against the workspace first."""
        if not isinstance(data, dict) or not isinstance(data.get("conversation_id"), str):
            return failure("invalid", "send {conversation_id, typing}")
        conversation_id: str = data["conversation_id"]
        typing = bool(data.get("typing"))
        operator = await self.get_session(sid)
        now = time.monotonic()
        states: dict[str, State] = operator["typing"]
        known = conversation_id in states
        state = relayed(states.get(conversation_id, IDLE), typing, now)
        if state is None or (not known and not _may_check(operator, now)):
            return {"ok": True}
        try:
            if not known and not await self._owns_conversation(
                operator["workspace_id"], conversation_id
            ):
                return failure("not_found", f"conversation {conversation_id} does not exist")
            _remember(states, conversation_id, state)
            await self._relay_typing(conversation_id, typing)
        except (PyMongoError, RedisError, OSError):
            return failure("unavailable", "the inbox is unavailable right now; retry")
        return {"ok": True}

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        """An operator who leaves while shown as typing is shown as not typing."""
        try:
            operator = await self.get_session(sid)
        except KeyError:
            return
        for conversation_id, (typing, _at) in list(operator.get("typing", {}).items()):
            if typing:
                try:
                    await self._relay_typing(conversation_id, False)
                except (RedisError, OSError) as error:
                    log.warning("typing relay failed: %s", error)

    async def _relay_typing(self, conversation_id: str, typing: bool) -> None:
        await self.emit(
            "typing",
            {"conversation_id": conversation_id, "role": "operator", "typing": typing},
            room=conversation_room(conversation_id),
            namespace=WIDGET_NAMESPACE,
        )


def _may_check(operator: dict[str, Any], now: float) -> bool:
    """At most ``MAX_TYPING_CHECKS`` lookups of new conversations per interval and connection:
    typing in made-up conversation ids must not become a database flood."""
    started, count = operator["typing_checks"]
    if now - started >= TYPING_EVERY_S:
        started, count = now, 0
    if count >= MAX_TYPING_CHECKS:
        return False
    operator["typing_checks"] = (started, count + 1)
    return True


def _remember(states: dict[str, State], conversation_id: str, state: State) -> None:
    """Keep ``state``, and at most ``MAX_TYPING_CONVERSATIONS``: idle ones go first, then the
    oldest (the widget clears an operator's typing line by itself after a while)."""
    states[conversation_id] = state
    excess = len(states) - MAX_TYPING_CONVERSATIONS
    if excess > 0:
        idle = [c for c, (typing, _at) in states.items() if not typing and c != conversation_id]
        others = [c for c in states if c != conversation_id and c not in set(idle)]
        for old in (idle + others)[:excess]:
            del states[old]
