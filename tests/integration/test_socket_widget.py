"""The /widget namespace against a real socket service, Redis, Kafka and the database."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from core import ids
from core.clients.realtime import WIDGET_NAMESPACE, RealtimeEmitter, conversation_room
from core.security.tokens import ALGORITHM, AUDIENCE
from core.settings import Settings
from core.stores.conversation_store import ConversationStore
from core.stores.recent_messages import RecentMessages, log_key
from streams.contract import MESSAGES_INBOUND
from streams.records import InboundMessage, decode
from tests.integration.api_harness import Db
from tests.integration.socket_harness import (
    Client,
    SocketService,
    socket_service,
    widget_application,
)
from tests.integration.topic_reader import end_offsets, records_since
from web.socket.widget import message_view

pytestmark = pytest.mark.integration


@pytest.fixture
async def app_key(settings: Settings) -> tuple[str, str]:
    return await widget_application(settings, f"ws_{uuid.uuid4().hex}")


def widget() -> Client:
    return Client(WIDGET_NAMESPACE)


def visitor_token(settings: Settings, application_id: str, *, exp_in_s: int) -> str:
    now = int(time.time())
    claims = {"sub": "v_forged", "typ": "visitor", "app": application_id, "aud": AUDIENCE,
              "iat": now - 3600, "exp": now + exp_in_s}  # fmt: skip
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


async def test_refusals_say_why(
    service: SocketService, settings: Settings, app_key: tuple[str, str]
) -> None:
    application_id, key = app_key
    _, other_key = await widget_application(settings, f"ws_{uuid.uuid4().hex}")
    other_app_token = await _token_of(service, other_key)
    assert await widget().refused_code(service.url, {}) == "bad_key"
    assert await widget().refused_code(service.url, {"key": "pk_not-a-real-key"}) == "bad_key"
    assert await widget().refused_code(service.url, {"key": "sbk_an-api-key"}) == "bad_key"
    expired = visitor_token(settings, application_id, exp_in_s=-10)
    assert await widget().refused_code(service.url, {"key": key, "token": expired}) == (
        "token_expired"
    )
    assert await widget().refused_code(service.url, {"key": key, "token": "x.y.z"}) == "bad_token"
    assert await widget().refused_code(service.url, {"key": key, "token": 7}) == "bad_token"
    # A visitor of another application is nobody here.
    assert await widget().refused_code(service.url, {"key": key, "token": other_app_token}) == (
        "bad_token"
    )


async def _token_of(service: SocketService, key: str) -> str:
    client = widget()
    await client.connect(service.url, {"key": key})
    [session] = await client.wait_for("session")
    await client.close()
    return str(session["token"])


async def test_a_returning_visitor_resumes_their_conversation(
    service: SocketService, app_key: tuple[str, str]
) -> None:
    application_id, key = app_key
    first = widget()
    await first.connect(service.url, {"key": key})
    [session] = await first.wait_for("session")
    [history] = await first.wait_for("history")
    await first.close()
    assert session["application_id"] == application_id
    assert session["conversation_id"] == ids.conversation_id(
        "web", application_id, session["visitor_id"]
    )
    assert history == {"messages": []}

    again = widget()
    await again.connect(service.url, {"key": key, "token": session["token"]})
    [resumed] = await again.wait_for("session")
    await again.close()
    assert resumed["conversation_id"] == session["conversation_id"]
    assert resumed["visitor_id"] == session["visitor_id"]

    stranger = widget()
    await stranger.connect(service.url, {"key": key})
    [other] = await stranger.wait_for("session")
    await stranger.close()
    assert other["conversation_id"] != session["conversation_id"]


async def _inbound_offsets(settings: Settings) -> dict[TopicPartition, int]:
    return await end_offsets(settings, MESSAGES_INBOUND)


async def _inbound_since(
    settings: Settings, offsets: dict[TopicPartition, int], conversation_id: str
) -> list[InboundMessage]:
    found: list[InboundMessage] = []
    for record in await records_since(settings, offsets):
        if record.key == conversation_id.encode():
            message = decode(record.value)
            assert isinstance(message, InboundMessage)
            found.append(message)
    return found


async def test_a_message_is_acked_after_kafka_has_it_and_a_retry_is_a_duplicate(
    service: SocketService, settings: Settings, app_key: tuple[str, str]
) -> None:
    application_id, key = app_key
    offsets = await _inbound_offsets(settings)
    client, other_tab = widget(), widget()
    await client.connect(service.url, {"key": key})
    [session] = await client.wait_for("session")
    await other_tab.connect(service.url, {"key": key, "token": session["token"]})
    await other_tab.wait_for("history")

    ack = await client.call("message", {"id": "c-1", "text": "hello <b>there</b>"})
    retry = await client.call("message", {"id": "c-1", "text": "hello <b>there</b>"})
    second = await client.call("message", {"id": "c-2", "text": "and again"})
    visitor_id = session["visitor_id"]
    expected_id = ids.inbound_message_id("web", application_id, visitor_id, "c-1")
    assert ack == {"ok": True, "message_id": expected_id, "duplicate": False}
    assert retry == {"ok": True, "message_id": expected_id, "duplicate": True}
    assert second["ok"]
    assert not second["duplicate"]

    records = await _inbound_since(settings, offsets, session["conversation_id"])
    assert [r.message_id for r in records] == [expected_id, second["message_id"]]
    first = records[0]
    assert (first.channel, first.channel_id, first.chat_id) == ("web", application_id, visitor_id)
    assert (first.external_id, first.text) == ("c-1", "hello <b>there</b>")
    # The visitor's other tab shows what this one sent; the sender is not echoed to itself.
    echoed = await other_tab.wait_for("message", 2)
    assert [m["id"] for m in echoed] == [expected_id, second["message_id"]]
    assert all(m["role"] == "user" for m in echoed)
    assert "message" not in client.received
    await client.close()
    await other_tab.close()


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "text",
        {"text": "no id"},
        {"id": "", "text": "empty id"},
        {"id": "has space", "text": "x"},
        {"id": "x" * 65, "text": "x"},
        {"id": "ok", "text": ""},
        {"id": "ok", "text": "   "},
        {"id": "ok", "text": "x" * 4001},
        {"id": "ok", "text": ["not", "text"]},
    ],
)
async def test_bad_messages_are_refused_and_send_nothing(
    service: SocketService, settings: Settings, app_key: tuple[str, str], payload: object
) -> None:
    _, key = app_key
    offsets = await _inbound_offsets(settings)
    client = widget()
    await client.connect(service.url, {"key": key})
    [session] = await client.wait_for("session")
    ack = await client.call("message", payload)
    await client.close()
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == "invalid", ack
    assert await _inbound_since(settings, offsets, session["conversation_id"]) == []


async def test_catch_up_after_a_forced_disconnect(
    service: SocketService, settings: Settings, db: Db, redis: Redis, app_key: tuple[str, str]
) -> None:
    """What the delivery agent does for a web message (log it, store it, push it), while the
    client is away: it comes back from the log, or from MongoDB once the log has lapsed."""
    application_id, key = app_key
    client = widget()
    await client.connect(service.url, {"key": key})
    [session] = await client.wait_for("session")
    conversation_id = session["conversation_id"]
    store, log = ConversationStore(db), RecentMessages(redis)
    emitter = RealtimeEmitter(settings)
    now = time.time()

    def stored(n: int, role: str, status: str = "delivered") -> dict[str, object]:
        return {"_id": f"m{n}_{uuid.uuid4().hex[:6]}", "conversation_id": conversation_id,
                "workspace_id": "ws", "application_id": application_id, "channel": "web",
                "role": role, "text": f"text {n}", "created_at": now + n, "status": status,
                "request_id": f"rq_{n}" if role == "bot" else ""}  # fmt: skip

    async def deliver(*documents: dict[str, object]) -> None:
        shown = [message_view(d) for d in documents if d["status"] != "suppressed"]
        await log.append(conversation_id, shown)
        await store.insert_messages(list(documents))
        for view in shown:
            await emitter.to_conversation(conversation_id, "message", view)

    before = [stored(1, "user"), stored(2, "bot")]
    await deliver(*before)
    assert [m["id"] for m in await client.wait_for("message", 2)] == [m["_id"] for m in before]

    [sid] = [s for s, _ in service.sio.manager.get_participants(
        WIDGET_NAMESPACE, conversation_room(conversation_id))]  # fmt: skip
    await service.sio.disconnect(sid, namespace=WIDGET_NAMESPACE)  # the server drops the client
    missed = [stored(3, "user"), stored(4, "bot", "suppressed"), stored(5, "operator")]
    await deliver(*missed)
    await client.close()
    await emitter.close()
    expected = [message_view(missed[0]), message_view(missed[2])]

    async def history(last_id: str | None) -> list[dict[str, object]]:
        back = widget()
        auth = {"key": key, "token": session["token"]}
        await back.connect(service.url, auth if last_id is None else {**auth, "last_id": last_id})
        [found] = await back.wait_for("history", within_s=60)
        await back.close()
        return list(found["messages"])

    assert await history(str(before[-1]["_id"])) == expected
    assert await history(None) == [*map(message_view, before), *expected]
    await redis.delete(log_key(conversation_id))  # the log lapsed: MongoDB answers
    await db["conversations"].insert_one({"_id": conversation_id, "workspace_id": "ws"})
    assert await history(str(before[-1]["_id"])) == expected


async def test_two_instances_act_as_one(settings: Settings, app_key: tuple[str, str]) -> None:
    _, key = app_key
    async with socket_service(settings) as first, socket_service(settings) as second:
        client = widget()
        await client.connect(first.url, {"key": key})
        [session] = await client.wait_for("session")
        room = conversation_room(session["conversation_id"])
        await second.sio.emit("message", {"id": "from-b"}, room=room, namespace=WIDGET_NAMESPACE)
        [pushed] = await client.wait_for("message")
        assert pushed == {"id": "from-b"}

        other_tab = widget()  # the same visitor on the other instance sees what this one sends
        await other_tab.connect(second.url, {"key": key, "token": session["token"]})
        await other_tab.wait_for("history")
        ack = await client.call("message", {"id": "across", "text": "hi"})
        [echo] = await other_tab.wait_for("message")
        assert echo["id"] == ack["message_id"]
        await client.close()
        await other_tab.close()


async def test_a_visitor_sending_too_fast_is_told_to_wait(
    settings: Settings, app_key: tuple[str, str]
) -> None:
    _, key = app_key
    limited = Settings(widget_messages_per_minute=3)
    offsets = await _inbound_offsets(settings)
    async with socket_service(limited) as service:
        client = widget()
        await client.connect(service.url, {"key": key})
        [session] = await client.wait_for("session")
        acks = [await client.call("message", {"id": f"m{n}", "text": "hi"}) for n in range(5)]
        # A retry of a message that went through is still a duplicate, not one more message.
        again = await client.call("message", {"id": "m0", "text": "hi"})
        await client.close()
    sent = [a for a in acks if a["ok"]]
    refused = [a for a in acks if not a["ok"]]
    # Three a minute; unless the minute turned over between the sends, the rest wait.
    assert len(sent) >= 3
    assert refused or len(sent) == 5
    for ack in refused:
        assert ack["error"]["code"] == "rate_limited"
        assert 1 <= ack["retry_after_s"] <= 60
    assert again["duplicate"] is True
    records = await _inbound_since(settings, offsets, session["conversation_id"])
    assert [r.message_id for r in records] == [a["message_id"] for a in sent]
