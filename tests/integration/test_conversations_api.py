"""The conversations API against the real FerretDB, Redis and Kafka, one fresh workspace per tenant.

Conversations and messages are inserted directly, shaped as the message-process agent writes
them; commands are read back from ``conversation.commands`` by their key (the conversation id).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from core.clients.cache import new_redis
from core.clients.database import Document
from core.ids import new_id
from core.security.tokens import TokenService
from core.settings import Settings
from streams.contract import CONTRACT, CONVERSATION_COMMANDS
from streams.records import ConversationCommand, decode
from web import conversations
from web.auth import revoked_session_key

Client = TestClient[web.Request, web.Application]
Db = AsyncDatabase[Document]
API = "/api/conversations"
TOPIC = CONVERSATION_COMMANDS
COMMANDS = ("takeover", "release", "close", "assign", "reply")


@dataclass(frozen=True)
class Tenant:
    workspace_id: str
    user_id: str
    session_id: str
    headers: dict[str, str]


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(conversations.create_app(settings))) as client:
        yield client


async def tenant(db: Db, settings: Settings, role: str = "agent") -> Tenant:
    """A user of a fresh workspace, with an access token of a live session."""
    workspace_id, user_id, session_id = new_id("ws"), new_id("usr"), new_id("ses")
    await db["users"].insert_one(
        {"_id": user_id, "workspace_id": workspace_id, "role": role, "email": f"{user_id}@x.test"}
    )
    token = TokenService(settings).access_token(user_id, workspace_id, role, session_id)
    return Tenant(workspace_id, user_id, session_id, {"Authorization": f"Bearer {token}"})


@pytest.fixture
async def alice(db: Db, settings: Settings) -> Tenant:
    return await tenant(db, settings)


@pytest.fixture
async def bob(db: Db, settings: Settings) -> Tenant:
    return await tenant(db, settings)


async def add_conversation(
    db: Db,
    owner: Tenant,
    *,
    updated_at: float | None = None,
    mode: str = "bot",
    channel: str = "telegram",
    application_id: str = "app_one",
    assignee_id: str | None = None,
) -> str:
    conversation_id = new_id("cv")
    now = updated_at if updated_at is not None else time.time()
    document: Document = {
        "_id": conversation_id,
        "conversation_id": conversation_id,
        "workspace_id": owner.workspace_id,
        "application_id": application_id,
        "channel": channel,
        "channel_id": f"ch_{application_id}",
        "chat_id": new_id("chat"),
        "mode": mode,
        "created_at": now - 10,
        "updated_at": now,
    }
    if assignee_id is not None:
        document["assignee_id"] = assignee_id
    await db["conversations"].insert_one(document)
    return conversation_id


async def add_message(
    db: Db,
    owner: Tenant,
    conversation_id: str,
    text: str,
    *,
    created_at: float,
    role: str = "user",
    seq: int | None = None,
    application_id: str = "app_one",
) -> str:
    message_id = new_id("in" if role == "user" else "bt")
    document: Document = {
        "_id": message_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "workspace_id": owner.workspace_id,
        "application_id": application_id,
        "channel": "telegram",
        "channel_id": f"ch_{application_id}",
        "chat_id": "chat",
        "created_at": created_at,
        "trace_id": "",
        "role": role,
        "text": text,
        "attachments": [],
        "status": "received",
    }
    if seq is not None:
        document["seq"] = seq
    await db["messages"].insert_one(document)
    return message_id


async def commands_for(settings: Settings, *keys: str) -> dict[str, list[ConversationCommand]]:
    """Every record on conversation.commands keyed by one of ``keys``, read from the start."""
    partitions = next(spec.partitions for spec in CONTRACT if spec.name == TOPIC)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-conversations-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[str, list[ConversationCommand]] = {key: [] for key in keys}
    try:
        assigned = [TopicPartition(TOPIC, p) for p in range(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        deadline = time.monotonic() + 20
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, "could not read conversation.commands to its end"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key in found:
                        command = decode(record.value)
                        assert isinstance(command, ConversationCommand)
                        found[key].append(command)
    finally:
        await consumer.stop()
    return found


async def ids_of(response: Any) -> list[str]:
    assert response.status == 200, await response.text()
    return [item["_id"] for item in (await response.json())["items"]]


async def all_pages(
    client: Client, url: str, who: Tenant, **params: str
) -> list[list[dict[str, Any]]]:
    """Every page, following ``next_cursor`` until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=query, headers=who.headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


# --- listing ----------------------------------------------------------------------------------


async def test_list_filters(client: Client, db: Db, alice: Tenant, bob: Tenant) -> None:
    base = 1_700_000_000.0
    bot = await add_conversation(db, alice, updated_at=base + 1)
    human = await add_conversation(
        db, alice, updated_at=base + 2, mode="human", assignee_id=alice.user_id
    )
    closed_web = await add_conversation(
        db, alice, updated_at=base + 3, mode="closed", channel="web", application_id="app_two"
    )
    await add_conversation(db, bob, updated_at=base + 4)

    async def listed(**params: str) -> list[str]:
        return await ids_of(await client.get(API, params=params, headers=alice.headers))

    assert await listed() == [closed_web, human, bot]  # newest first, none of Bob's
    assert await listed(status="bot") == [bot]
    assert await listed(status="human") == [human]
    assert await listed(status="closed") == [closed_web]
    assert await listed(channel="web") == [closed_web]
    assert await listed(application_id="app_one") == [human, bot]
    assert await listed(assignee_id=alice.user_id) == [human]
    assert await listed(updated_since=str(base + 2)) == [closed_web, human]
    iso = datetime.fromtimestamp(base + 3, tz=UTC).isoformat()
    assert await listed(updated_since=iso) == [closed_web]
    assert await listed(updated_since=iso.replace("+00:00", "")) == [closed_web]  # naive: UTC
    assert await listed(application_id="app_one", status="bot", channel="web") == []


async def test_list_pages_without_repeats_or_gaps(client: Client, db: Db, alice: Tenant) -> None:
    base = 1_700_000_000.0
    # Ties on updated_at on purpose: the _id breaks them, so no item is skipped or repeated.
    made = [
        await add_conversation(
            db, alice, updated_at=base + i // 3, mode="human" if i % 2 else "bot"
        )
        for i in range(23)
    ]
    pages = await all_pages(client, API, alice, limit="5")
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    seen = [item["_id"] for page in pages for item in page]
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == set(made)

    response = await client.get(API, params={"limit": "100"}, headers=alice.headers)
    items = (await response.json())["items"]
    assert [i["_id"] for i in items] == seen
    keys = [(i["updated_at"], i["_id"]) for i in items]
    assert keys == sorted(keys, reverse=True)

    humans = await all_pages(client, API, alice, limit="4", status="human")
    flat = [item["_id"] for page in humans for item in page]
    assert len(flat) == len(set(flat)) == 11
    assert set(flat) == {c for i, c in enumerate(made) if i % 2}

    exact = await all_pages(client, API, alice, limit="23")
    assert [len(page) for page in exact] == [23]  # no empty last page


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "WzEsMl0"},  # [1,2]: valid base64 JSON, but not a cursor
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "many"},
        {"status": "open"},
        {"updated_since": "yesterday"},
        {"updated_since": "nan"},
        {"application_id": ""},
        {"colour": "blue"},
    ],
)
async def test_list_refuses_bad_queries(
    client: Client, alice: Tenant, params: dict[str, str]
) -> None:
    response = await client.get(API, params=params, headers=alice.headers)
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["details"][0]["field"] == next(iter(params))


# --- one conversation and its messages --------------------------------------------------------


async def test_get_conversation(client: Client, db: Db, alice: Tenant, bob: Tenant) -> None:
    mine = await add_conversation(db, alice)
    theirs = await add_conversation(db, bob)
    response = await client.get(f"{API}/{mine}", headers=alice.headers)
    assert response.status == 200
    body = await response.json()
    assert body["_id"] == mine
    assert body["workspace_id"] == alice.workspace_id

    for missing in (theirs, "cv_missing"):
        response = await client.get(f"{API}/{missing}", headers=alice.headers)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_message_history_pages_in_order(
    client: Client, db: Db, alice: Tenant, bob: Tenant
) -> None:
    conversation = await add_conversation(db, alice)
    other = await add_conversation(db, alice)
    base = 1_700_000_000.0
    made = []
    for i in range(12):  # pairs share a created_at: a user message and the bot's answer
        role = "user" if i % 2 == 0 else "bot"
        seq = i // 2 + 1 if role == "user" else None
        made.append(
            await add_message(
                db, alice, conversation, f"m{i}", created_at=base + i // 2, role=role, seq=seq
            )
        )
    await add_message(db, alice, other, "elsewhere", created_at=base)

    # FerretDB scans every message for each page here, so few pages: the first one ends
    # inside a pair that shares created_at, and the cursor still neither repeats nor skips.
    url = f"{API}/{conversation}/messages"
    pages = await all_pages(client, url, alice, limit="7")
    assert [len(page) for page in pages] == [7, 5]
    items = [item for page in pages for item in page]
    seen = [m["_id"] for m in items]
    assert len(seen) == len(set(seen)) == 12
    assert set(seen) == set(made)
    keys = [(m["created_at"], m["_id"]) for m in items]
    assert keys == sorted(keys)
    assert [m["created_at"] for m in items] == [base + i // 2 for i in range(12)]
    assert [m.get("seq") for m in items if m["role"] == "user"] == [1, 2, 3, 4, 5, 6]

    theirs = await add_conversation(db, bob)
    await add_message(db, bob, theirs, "secret", created_at=base)
    response = await client.get(f"{API}/{theirs}/messages", headers=alice.headers)
    assert response.status == 404
    response = await client.get(url, params={"cursor": "%%%"}, headers=alice.headers)
    assert response.status == 422


# --- search -----------------------------------------------------------------------------------


async def test_search_matches_literally_within_the_workspace(
    client: Client, db: Db, alice: Tenant, bob: Tenant
) -> None:
    word = uuid.uuid4().hex[:10]
    mine = await add_conversation(db, alice)
    theirs = await add_conversation(db, bob)
    base = 1_700_000_000.0
    literal = await add_message(db, alice, mine, f"{word} costs $5.00 (a+b)*", created_at=base)
    shouted = await add_message(
        db, alice, mine, f"{word.upper()} COSTS $5.00 (A+B)*", created_at=base + 1, role="bot"
    )
    await add_message(db, alice, mine, f"{word} costs $5X00 (aab)", created_at=base + 2)
    other_app = await add_message(
        db, alice, mine, f"{word} costs $5.00 (a+b)* too", created_at=base + 3, application_id="x"
    )
    await add_message(db, bob, theirs, f"{word} costs $5.00 (a+b)*", created_at=base + 4)

    async def found(q: str, **params: str) -> list[str]:
        response = await client.get(
            f"{API}/search", params={"q": q, **params}, headers=alice.headers
        )
        return await ids_of(response)

    # Newest first; "." "$" "(" "+" "*" matched as themselves; any case; never Bob's message.
    assert await found(f"{word} costs $5.00 (a+b)*") == [other_app, shouted, literal]
    assert await found(f"{word} costs $5.00 (a+b)*", application_id="app_one", limit="1") == [
        shouted
    ]
    assert await found(f"{word}.*aab") == []  # would match as a pattern

    for params in ({"q": "a"}, {"q": "x" * 201}, {}, {"q": "ok", "limit": "0"}):
        response = await client.get(f"{API}/search", params=params, headers=alice.headers)
        assert response.status == 422


# --- commands ---------------------------------------------------------------------------------


async def test_each_command_is_produced_once_and_answered_202(
    client: Client, db: Db, settings: Settings, alice: Tenant
) -> None:
    teammate = await tenant(db, settings)
    await db["users"].update_one(
        {"_id": teammate.user_id}, {"$set": {"workspace_id": alice.workspace_id}}
    )
    bodies: dict[str, Any] = {
        "takeover": None,
        "release": {},
        "close": {"reason": "resolved"},
        "assign": {"assignee_id": teammate.user_id},
        "reply": {"text": "Hello from a human"},
    }
    conversation_of: dict[str, str] = {}
    answered: dict[str, str] = {}
    for action, body in bodies.items():
        conversation_of[action] = await add_conversation(db, alice, mode="bot")
        response = await client.post(
            f"{API}/{conversation_of[action]}/{action}", json=body, headers=alice.headers
        )
        assert response.status == 202, await response.text()
        answer = await response.json()
        assert answer["action"] == action
        assert answer["command_id"].startswith("cmd_")
        answered[action] = answer["command_id"]
    unassign_in = await add_conversation(db, alice)
    response = await client.post(
        f"{API}/{unassign_in}/assign", json={"assignee_id": None}, headers=alice.headers
    )
    assert response.status == 202

    produced = await commands_for(settings, unassign_in, *conversation_of.values())
    for action, conversation_id in conversation_of.items():
        assert len(produced[conversation_id]) == 1, action
        command = produced[conversation_id][0]
        stored = await db["conversations"].find_one({"_id": conversation_id})
        assert stored is not None
        assert command.message_id == answered[action]
        assert command.action == action
        assert command.conversation_id == conversation_id
        assert command.workspace_id == alice.workspace_id
        assert command.operator_id == alice.user_id
        for field in ("application_id", "channel", "channel_id", "chat_id"):
            assert getattr(command, field) == stored[field], field
    assert produced[conversation_of["assign"]][0].assignee_id == teammate.user_id
    assert produced[conversation_of["reply"]][0].text == "Hello from a human"
    assert produced[conversation_of["close"]][0].text == "resolved"
    assert [(c.action, c.assignee_id) for c in produced[unassign_in]] == [("assign", "")]


async def test_bad_commands_are_refused_and_produce_nothing(
    client: Client, db: Db, settings: Settings, alice: Tenant, bob: Tenant
) -> None:
    refused: list[tuple[str, str | bytes | None, int, str]] = [
        ("reply", b"{not json", 400, "malformed_json"),
        ("reply", json.dumps({}), 422, "validation_failed"),
        ("reply", json.dumps({"text": ""}), 422, "validation_failed"),
        ("reply", json.dumps({"text": "   "}), 422, "validation_failed"),
        ("reply", json.dumps({"text": "x" * 4001}), 422, "validation_failed"),
        ("reply", json.dumps({"text": 42}), 422, "validation_failed"),
        ("reply", json.dumps(["hello"]), 422, "validation_failed"),
        ("assign", json.dumps({}), 422, "validation_failed"),
        ("assign", json.dumps({"assignee_id": 7}), 422, "validation_failed"),
        ("assign", json.dumps({"assignee_id": "usr_nobody"}), 422, "validation_failed"),
        ("assign", json.dumps({"assignee_id": bob.user_id}), 422, "validation_failed"),
        ("takeover", b"{", 400, "malformed_json"),
        ("takeover", json.dumps({"mode": "human"}), 422, "validation_failed"),
        ("close", json.dumps("now"), 422, "validation_failed"),
    ]
    used = []
    for action, body, status, code in refused:
        conversation_id = await add_conversation(db, alice)
        used.append(conversation_id)
        response = await client.post(
            f"{API}/{conversation_id}/{action}",
            data=body,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert response.status == status, (action, body, await response.text())
        assert (await response.json())["error"]["code"] == code
        if status == 422:
            assert (await response.json())["error"]["details"]
    produced = await commands_for(settings, *used)
    assert all(not records for records in produced.values())


async def test_another_workspace_is_not_found(
    client: Client, db: Db, settings: Settings, alice: Tenant, bob: Tenant
) -> None:
    theirs = await add_conversation(db, bob)
    await add_message(db, bob, theirs, "private", created_at=time.time())
    for path in (f"{API}/{theirs}", f"{API}/{theirs}/messages"):
        response = await client.get(path, headers=alice.headers)
        assert response.status == 404, path
    bodies: dict[str, Any] = {
        "takeover": {},
        "release": {},
        "close": {},
        "assign": {"assignee_id": alice.user_id},
        "reply": {"text": "hi"},
    }
    for action in COMMANDS:
        response = await client.post(
            f"{API}/{theirs}/{action}", json=bodies[action], headers=alice.headers
        )
        assert response.status == 404, action
        assert (await response.json())["error"]["code"] == "not_found"
    # Bob's own conversation, assigned to Alice (not of his workspace): refused too.
    response = await client.post(
        f"{API}/{theirs}/assign", json={"assignee_id": alice.user_id}, headers=bob.headers
    )
    assert response.status == 422
    assert (await commands_for(settings, theirs))[theirs] == []


# --- who may call -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "agent"])
async def test_every_operator_role_works_conversations(
    client: Client, db: Db, settings: Settings, role: str
) -> None:
    operator = await tenant(db, settings, role)
    conversation_id = await add_conversation(db, operator)
    assert await ids_of(await client.get(API, headers=operator.headers)) == [conversation_id]
    response = await client.post(f"{API}/{conversation_id}/takeover", headers=operator.headers)
    assert response.status == 202


async def test_without_a_valid_token_401(
    client: Client, db: Db, settings: Settings, alice: Tenant
) -> None:
    conversation_id = await add_conversation(db, alice)
    tokens = TokenService(settings)
    refresh, _ = tokens.refresh_token(alice.user_id, "family")
    other_key = Settings(jwt_secret=SecretStr("another-secret-that-is-long-enough-for-hs256"))
    forged = TokenService(other_key).access_token(alice.user_id, alice.workspace_id, "owner", "ses")
    strange_role = tokens.access_token(alice.user_id, alice.workspace_id, "visitor", "ses")
    redis = new_redis(settings)
    try:
        await redis.set(revoked_session_key(alice.session_id), "1", ex=60)
        bad_headers: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer not-a-jwt"},
            {"Authorization": f"Bearer {refresh}"},
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Bearer {strange_role}"},
            alice.headers,  # signed out
        ]
        for headers in bad_headers:
            for method, path in (
                ("GET", API),
                ("GET", f"{API}/{conversation_id}"),
                ("GET", f"{API}/search?q=hello"),
                ("POST", f"{API}/{conversation_id}/takeover"),
                ("POST", f"{API}/{conversation_id}/reply"),
            ):
                response = await client.request(method, path, headers=headers, json={"text": "x"})
                assert response.status == 401, (headers, method, path)
                assert response.headers["WWW-Authenticate"] == "Bearer"
    finally:
        await redis.delete(revoked_session_key(alice.session_id))
        await redis.aclose()
    assert (await commands_for(settings, conversation_id))[conversation_id] == []
