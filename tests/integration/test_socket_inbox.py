"""The /inbox namespace: operators see their own workspace's live feed and nothing else."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
from redis.asyncio import Redis

from core import ids
from core.clients.realtime import INBOX_NAMESPACE, WIDGET_NAMESPACE
from core.security.tokens import ALGORITHM, AUDIENCE
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS
from streams.records import ConversationEvent
from tests.integration.api_harness import Db
from tests.integration.pipeline_harness import send_all
from tests.integration.socket_harness import (
    Client,
    SocketService,
    operator_token,
    widget_application,
)
from web.auth import revoked_session_key

pytestmark = pytest.mark.integration


def inbox() -> Client:
    return Client(INBOX_NAMESPACE)


async def test_refusals(service: SocketService, settings: Settings, redis: Redis) -> None:
    assert await inbox().refused_code(service.url, {}) == "unauthorized"
    assert await inbox().refused_code(service.url, {"token": "nope"}) == "unauthorized"
    now = int(time.time())
    expired = jwt.encode(
        {
            "sub": "usr_1",
            "typ": "access",
            "ws": "ws_1",
            "role": "agent",
            "sid": "ses_1",
            "aud": AUDIENCE,
            "iat": now - 3600,
            "exp": now - 60,
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=ALGORITHM,
    )
    assert await inbox().refused_code(service.url, {"token": expired}) == "unauthorized"
    visitor = jwt.encode(
        {
            "sub": "v_1",
            "typ": "visitor",
            "app": "app_1",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 60,
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=ALGORITHM,
    )
    assert await inbox().refused_code(service.url, {"token": visitor}) == "unauthorized"
    signed_out = operator_token(settings, "ws_1")
    session_id = jwt.decode(signed_out, options={"verify_signature": False})["sid"]
    await redis.set(revoked_session_key(session_id), "1", ex=60)
    assert await inbox().refused_code(service.url, {"token": signed_out}) == "unauthorized"


def _event(
    workspace_id: str, application_id: str, conversation_id: str, kind: str
) -> ConversationEvent:
    return ConversationEvent(
        message_id=ids.new_id("ev"),
        conversation_id=conversation_id,
        workspace_id=workspace_id,
        application_id=application_id,
        channel="web",
        channel_id=application_id,
        created_at=time.time(),
        type=kind,
        subject_id=conversation_id,
        mode="human",
        data={"reason": "test"},
    )


async def test_the_feed_reaches_only_its_workspace_once_per_client(
    service: SocketService, settings: Settings, db: Db
) -> None:
    mine, theirs = f"ws_{uuid.uuid4().hex}", f"ws_{uuid.uuid4().hex}"
    application_id, _ = await widget_application(settings, mine)
    their_application, _ = await widget_application(settings, theirs)
    conversation_id = ids.conversation_id("web", application_id, "v_1")
    their_conversation = ids.conversation_id("web", their_application, "v_2")
    await db["conversations"].insert_many(
        [
            {"_id": conversation_id, "workspace_id": mine, "application_id": application_id},
            {
                "_id": their_conversation,
                "workspace_id": theirs,
                "application_id": their_application,
            },
        ]
    )
    operator, watcher, outsider = inbox(), inbox(), inbox()
    await operator.connect(service.url, {"token": operator_token(settings, mine)})
    await watcher.connect(service.url, {"token": operator_token(settings, mine)})
    await outsider.connect(service.url, {"token": operator_token(settings, theirs)})
    [session] = await operator.wait_for("session")
    assert session["workspace_id"] == mine

    # Joining is checked against the operator's workspace: theirs reads as missing.
    assert await operator.call("join", {"conversation_id": conversation_id}) == {"ok": True}
    assert await operator.call("join", {"application_id": application_id}) == {"ok": True}
    for room in ({"conversation_id": their_conversation}, {"application_id": their_application},
                 {"conversation_id": "cv_missing"}):  # fmt: skip
        refused = await operator.call("join", room)
        assert refused["ok"] is False, refused
        assert refused["error"]["code"] == "not_found", refused
    assert (await operator.call("join", "nonsense"))["error"]["code"] == "invalid"

    await service.feed_ready()
    kinds = ["conversation.created", "message.created", "mode.changed", "conversation.assigned",
             "delivery.failed"]  # fmt: skip
    events = [_event(mine, application_id, conversation_id, kind) for kind in kinds]
    internal = _event(mine, application_id, conversation_id, "turn.completed")
    await send_all(
        settings,
        CONVERSATION_EVENTS,
        [events[0], internal, *events[1:]],
    )
    got = await operator.wait_for("event", len(kinds), within_s=30)
    watched = await watcher.wait_for("event", len(kinds), within_s=30)
    await asyncio.sleep(1)  # time for a duplicate or a leak to show
    # In three rooms of the event (workspace, application, conversation), yet each event once.
    assert [e["id"] for e in operator.received["event"]] == [e.message_id for e in events]
    assert [e["type"] for e in got] == kinds
    assert got[2] == {
        "id": events[2].message_id, "type": "mode.changed", "conversation_id": conversation_id,
        "application_id": application_id, "channel": "web", "subject_id": conversation_id,
        "mode": "human", "data": {"reason": "test"}, "created_at": events[2].created_at,
    }  # fmt: skip
    assert [e["id"] for e in watched] == [e.message_id for e in events]
    assert "event" not in outsider.received
    for client in (operator, watcher, outsider):
        await client.close()


async def test_typing_goes_both_ways(service: SocketService, settings: Settings, db: Db) -> None:
    workspace_id = f"ws_{uuid.uuid4().hex}"
    application_id, key = await widget_application(settings, workspace_id)
    visitor = Client(WIDGET_NAMESPACE)
    await visitor.connect(service.url, {"key": key})
    [session] = await visitor.wait_for("session")
    conversation_id = session["conversation_id"]
    await db["conversations"].insert_one(
        {"_id": conversation_id, "workspace_id": workspace_id, "application_id": application_id}
    )
    operator, outsider = inbox(), inbox()
    await operator.connect(service.url, {"token": operator_token(settings, workspace_id)})
    await outsider.connect(
        service.url, {"token": operator_token(settings, f"ws_{uuid.uuid4().hex}")}
    )
    assert await operator.call("join", {"conversation_id": conversation_id}) == {"ok": True}

    await visitor.emit("typing", {"typing": True})
    [seen] = await operator.wait_for("typing")
    assert seen == {"conversation_id": conversation_id, "role": "visitor", "typing": True}

    ack = await operator.call("typing", {"conversation_id": conversation_id, "typing": True})
    assert ack == {"ok": True}
    [shown] = await visitor.wait_for("typing")
    assert shown == {"conversation_id": conversation_id, "role": "operator", "typing": True}
    # Another workspace's operator cannot type into this conversation.
    refused = await outsider.call("typing", {"conversation_id": conversation_id, "typing": True})
    assert refused["error"]["code"] == "not_found"
    await asyncio.sleep(0.5)
    assert len(visitor.received["typing"]) == 1
    assert "typing" not in outsider.received
    for client in (visitor, operator, outsider):
        await client.close()


async def test_a_connection_ends_when_its_token_expires(
    service: SocketService, settings: Settings
) -> None:
    now = int(time.time())
    short_lived = jwt.encode(
        {"sub": "usr_1", "typ": "access", "ws": "ws_1", "role": "agent", "sid": "ses_1",
         "aud": AUDIENCE, "iat": now, "exp": now + 2},
        settings.jwt_secret.get_secret_value(),
        algorithm=ALGORITHM,
    )  # fmt: skip
    operator = inbox()
    await operator.connect(service.url, {"token": short_lived})
    [expired] = await operator.wait_for("session.expired", within_s=10)
    assert expired["code"] == "token_expired"
    deadline = time.monotonic() + 10
    while operator.sio.connected:
        assert time.monotonic() < deadline, "still connected after its token expired"
        await asyncio.sleep(0.1)
    await operator.sio.shutdown()
