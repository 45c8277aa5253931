"""The applications API against the real FerretDB, Redis and Kafka, one fresh workspace per tenant.

Operators are signed in with access tokens minted directly; records the new-conversation API
produces are read back from Kafka by their key (the conversation id), and one test runs a real
worker, whose message-process agent creates the conversations that API opens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.asyncio import Redis

from core import ids
from core.cached.applications import ApplicationDirectory, UnknownApplication
from core.clients.database import Document
from core.settings import Settings
from streams.contract import CONTRACT, CONVERSATION_COMMANDS, CONVERSATION_EVENTS, MESSAGES_INBOUND
from streams.records import ConversationCommand, ConversationEvent, InboundMessage, decode
from tests.integration.api_harness import Db, Tenant, new_tenant
from tests.integration.pipeline_harness import Worker, running, send_all
from web import applications

Client = TestClient[web.Request, web.Application]
API = "/api/apps"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(applications.create_app(settings))) as client:
        yield client


async def _create(client: Client, tenant: Tenant, **fields: Any) -> Document:
    response = await client.post(API, json={"name": "Support", **fields}, headers=tenant.headers)
    assert response.status == 201, await response.text()
    created: Document = await response.json()
    return created


async def _new_key(client: Client, tenant: Tenant, application_id: str) -> Document:
    response = await client.post(f"{API}/{application_id}/keys", json={}, headers=tenant.headers)
    assert response.status == 201, await response.text()
    key: Document = await response.json()
    return key


class Tail:
    """Records written to ``topic`` after the block starts, read back by key."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self._read: list[ConsumerRecord[Any, Any]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
        )

    async def __aenter__(self) -> Tail:
        await self._consumer.start()
        partitions = range(next(spec.partitions for spec in CONTRACT if spec.name == self.topic))
        assigned = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        for partition in assigned:
            await self._consumer.position(partition)  # resolve "end" now, before the request
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def records(
        self, key: str, want: int, within_s: float = 15
    ) -> list[ConsumerRecord[Any, Any]]:
        return await self.until(key, lambda found: len(found) >= want, within_s)

    async def until(
        self,
        key: str,
        done: Callable[[list[ConsumerRecord[Any, Any]]], bool],
        within_s: float = 15,
    ) -> list[ConsumerRecord[Any, Any]]:
        """Every record of ``key`` read since the block started, once ``done`` says that is
        enough (or time is up)."""
        deadline = time.monotonic() + within_s
        while not done(found := [r for r in self._read if r.key == key.encode()]):
            if time.monotonic() > deadline:
                break
            batch = await self._consumer.getmany(timeout_ms=300)
            for records in batch.values():
                self._read += records
        return found


def _events(records: list[ConsumerRecord[Any, Any]], kind: str) -> list[ConversationEvent]:
    events = [decode(r.value) for r in records]
    return [e for e in events if isinstance(e, ConversationEvent) and e.type == kind]


async def test_an_application_is_created_read_listed_updated_and_deleted(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    created = await _create(client, tenant, prompt="Be brief.", welcome_message="Hi!")
    assert created["id"].startswith("app_")
    assert created["widget_key"].startswith("pk_")
    assert len(created["widget_key"]) > 20
    assert (created["name"], created["prompt"], created["welcome_message"]) == (
        "Support",
        "Be brief.",
        "Hi!",
    )
    assert created["chatbot_id"] is None
    stored = await db["applications"].find_one({"_id": created["id"]})
    assert stored is not None
    assert stored["workspace_id"] == tenant.workspace_id

    url = f"{API}/{created['id']}"
    assert await (await client.get(url, headers=tenant.headers)).json() == created
    listed = await (await client.get(API, headers=tenant.headers)).json()
    assert [a["id"] for a in listed["applications"]] == [created["id"]]

    response = await client.patch(url, json={"prompt": "Be kind."}, headers=tenant.headers)
    assert response.status == 200
    updated = await response.json()
    assert updated["prompt"] == "Be kind."
    assert updated["name"] == "Support"
    assert updated["widget_key"] == created["widget_key"]

    assert (await client.delete(url, headers=tenant.headers)).status == 204
    missing = await client.get(url, headers=tenant.headers)
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    assert await db["applications"].find_one({"_id": created["id"]}) is None


async def test_an_applications_budget_is_stored_shown_and_replaced_whole(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    defaults = {"messages_per_minute": None, "tokens_per_day": None}
    plain = await _create(client, tenant)
    assert plain["budget"] == defaults
    created = await _create(client, tenant, budget={"tokens_per_day": 50_000})
    assert created["budget"] == {"messages_per_minute": None, "tokens_per_day": 50_000}
    stored = await db["applications"].find_one({"_id": created["id"]})
    assert stored is not None
    assert stored["budget"] == {"messages_per_minute": None, "tokens_per_day": 50_000}

    url = f"{API}/{created['id']}"
    response = await client.patch(
        url, json={"budget": {"messages_per_minute": 20}}, headers=tenant.headers
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["budget"] == {"messages_per_minute": 20, "tokens_per_day": None}
    response = await client.patch(url, json={"budget": None}, headers=tenant.headers)
    assert (await response.json())["budget"] == defaults
    for bad in ({"messages_per_minute": 0}, {"tokens_per_day": 10**12}, {"tokens_per_day": True}):
        response = await client.patch(url, json={"budget": bad}, headers=tenant.headers)
        assert response.status == 422, bad
    agent = tenant.as_role(settings, "agent")
    response = await client.patch(url, json={"budget": {"tokens_per_day": 1}}, headers=agent)
    assert response.status == 403


async def test_bad_input_is_refused_and_stores_nothing(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    malformed = await client.post(
        API, data=b'{"name": ', headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["error"]["code"] == "malformed_json"

    wrong = await client.post(
        API, json={"name": 5, "prompt": [], "colour": "red"}, headers=tenant.headers
    )
    assert wrong.status == 422
    error = (await wrong.json())["error"]
    assert error["code"] == "validation_failed"
    assert {d["field"] for d in error["details"]} == {"name", "prompt", "colour"}
    assert (await client.post(API, json={"name": ""}, headers=tenant.headers)).status == 422
    assert (await client.post(API, json=["name"], headers=tenant.headers)).status == 422
    assert await db["applications"].count_documents({"workspace_id": tenant.workspace_id}) == 0

    created = await _create(client, tenant)
    url = f"{API}/{created['id']}"
    for body in ({"name": None}, {"prompt": 3}, {"widget_key": "pk_mine"}):
        response = await client.patch(url, json=body, headers=tenant.headers)
        assert response.status == 422, body
    unknown_bot = await client.patch(url, json={"chatbot_id": "bot_x"}, headers=tenant.headers)
    assert unknown_bot.status == 422
    assert (await unknown_bot.json())["error"]["details"][0]["field"] == "chatbot_id"
    assert await (await client.get(url, headers=tenant.headers)).json() == created


async def test_no_token_no_access(client: Client, settings: Settings) -> None:
    assert (await client.get(API)).status == 401
    assert (await client.post(API, json={"name": "x"})).status == 401
    forged = {"Authorization": "Bearer not-a-token"}
    assert (await client.get(API, headers=forged)).status == 401


async def test_an_agent_reads_but_cannot_change_anything(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    created = await _create(client, tenant)
    key = await _new_key(client, tenant, created["id"])
    agent = tenant.as_role(settings, "agent")
    url = f"{API}/{created['id']}"
    refused = [
        await client.post(API, json={"name": "Mine"}, headers=agent),
        await client.patch(url, json={"name": "Mine"}, headers=agent),
        await client.delete(url, headers=agent),
        await client.post(f"{url}/keys", json={}, headers=agent),
        await client.delete(f"{url}/keys/{key['id']}", headers=agent),
    ]
    for response in refused:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"
    assert (await client.get(API, headers=agent)).status == 200
    assert await (await client.get(url, headers=agent)).json() == created
    keys = await (await client.get(f"{url}/keys", headers=agent)).json()
    assert [k["id"] for k in keys["keys"]] == [key["id"]]
    assert keys["keys"][0]["revoked_at"] is None
    assert await db["applications"].count_documents({"workspace_id": tenant.workspace_id}) == 1
    owner = tenant.as_role(settings, "owner")
    assert (await client.patch(url, json={"name": "Owned"}, headers=owner)).status == 200


async def test_another_workspaces_application_is_as_unknown_as_a_missing_one(
    client: Client, settings: Settings, db: Db
) -> None:
    a, b = new_tenant(settings), new_tenant(settings)
    theirs = await _create(client, b, prompt="B's prompt")
    their_key = await _new_key(client, b, theirs["id"])
    ours = await _create(client, a)
    url = f"{API}/{theirs['id']}"
    answers = [
        await client.get(url, headers=a.headers),
        await client.patch(url, json={"prompt": "pwned"}, headers=a.headers),
        await client.delete(url, headers=a.headers),
        await client.get(f"{url}/keys", headers=a.headers),
        await client.post(f"{url}/keys", json={}, headers=a.headers),
        await client.delete(f"{url}/keys/{their_key['id']}", headers=a.headers),
        await client.delete(f"{API}/{ours['id']}/keys/{their_key['id']}", headers=a.headers),
        await client.get(f"{API}/app_does_not_exist", headers=a.headers),
    ]
    for response in answers:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    listed = await (await client.get(API, headers=a.headers)).json()
    assert [x["id"] for x in listed["applications"]] == [ours["id"]]
    assert await (await client.get(url, headers=b.headers)).json() == theirs
    stored_key = await db["api_keys"].find_one({"_id": their_key["id"]})
    assert stored_key is not None
    assert stored_key["revoked_at"] is None
    # B's chatbot cannot be linked to A's application either.
    await db["chatbots"].insert_one(
        {"_id": f"bot_{uuid.uuid4().hex}", "workspace_id": b.workspace_id, "name": "B's"}
    )
    bot = await db["chatbots"].find_one({"workspace_id": b.workspace_id})
    assert bot is not None
    linked = await client.patch(
        f"{API}/{ours['id']}", json={"chatbot_id": bot["_id"]}, headers=a.headers
    )
    assert linked.status == 422


async def test_an_api_key_is_shown_once_stored_hashed_and_revocable(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    created = await _create(client, tenant)
    other = await _create(client, tenant, name="Other")
    url = f"{API}/{created['id']}"
    shown = await _new_key(client, tenant, created["id"])
    secret = shown["key"]
    assert secret.startswith("sbk_")
    assert len(secret) >= 40
    assert shown["prefix"] == secret[:8]

    stored = await db["api_keys"].find_one({"_id": shown["id"]})
    assert stored is not None
    assert stored["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(stored, default=str)
    listed = await (await client.get(f"{url}/keys", headers=tenant.headers)).json()
    assert "key" not in listed["keys"][0]
    assert "hash" not in listed["keys"][0]
    assert secret not in json.dumps(listed)

    conversations = f"{url}/conversations"
    body = {"external_user_id": "crm-42"}
    assert (
        await client.post(conversations, json=body, headers={"X-Api-Key": secret})
    ).status == 202
    for headers in ({}, {"X-Api-Key": "sbk_guessed"}, {"X-Api-Key": secret[:-1]}, tenant.headers):
        assert (await client.post(conversations, json=body, headers=headers)).status == 401
    # A key opens its own application only.
    wrong_app = await client.post(
        f"{API}/{other['id']}/conversations", json=body, headers={"X-Api-Key": secret}
    )
    assert wrong_app.status == 404

    assert (await client.delete(f"{url}/keys/{shown['id']}", headers=tenant.headers)).status == 204
    refused = await client.post(conversations, json=body, headers={"X-Api-Key": secret})
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthorized"
    listed = await (await client.get(f"{url}/keys", headers=tenant.headers)).json()
    assert listed["keys"][0]["revoked_at"] is not None
    # Deleting the application deletes its keys.
    await _new_key(client, tenant, created["id"])
    assert (await client.delete(url, headers=tenant.headers)).status == 204
    assert await db["api_keys"].count_documents({"application_id": created["id"]}) == 0


async def test_a_new_conversation_is_one_record_for_the_pipeline(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    created = await _create(client, tenant)
    app_id = created["id"]
    key = (await _new_key(client, tenant, app_id))["key"]
    chat, quiet = f"crm-{uuid.uuid4().hex[:8]}", f"crm-{uuid.uuid4().hex[:8]}"
    conversation_id = ids.conversation_id("api", app_id, chat)
    body = {
        "external_user_id": chat,
        "name": "Ada",
        "text": "Where is my order?",
        "message_id": "m-1",
    }
    async with (
        Tail(settings, MESSAGES_INBOUND) as inbound,
        Tail(settings, CONVERSATION_COMMANDS) as commands,
        Tail(settings, CONVERSATION_EVENTS) as events,
    ):
        response = await client.post(
            f"{API}/{app_id}/conversations", json=body, headers={"X-Api-Key": key}
        )
        assert response.status == 202, await response.text()
        answer = await response.json()
        # Without text: an `open` command, for a conversation without a first message yet.
        opened = await client.post(
            f"{API}/{app_id}/conversations",
            json={"external_user_id": quiet, "name": "Grace"},
            headers={"X-Api-Key": key},
        )
        assert opened.status == 202, await opened.text()
        quiet_id = (await opened.json())["conversation_id"]
        messages = await inbound.records(conversation_id, want=1)
        (open_record,) = await commands.records(quiet_id, want=1)
        # The agent announces conversations, not this service: nothing of it reaches the feed.
        announced = await events.records(conversation_id, want=1, within_s=3)
    message_id = ids.inbound_message_id("api", app_id, chat, "m-1")
    assert answer == {
        "conversation_id": conversation_id,
        "application_id": app_id,
        "channel": "api",
        "chat_id": chat,
        "created": True,
        "message_id": message_id,
    }
    assert len(messages) == 1
    record = decode(messages[0].value)
    assert isinstance(record, InboundMessage)
    assert (record.message_id, record.workspace_id, record.application_id) == (
        message_id,
        tenant.workspace_id,
        app_id,
    )
    assert (record.channel, record.channel_id, record.chat_id) == ("api", app_id, chat)
    assert (record.text, record.sender_id, record.sender_name) == (
        "Where is my order?",
        chat,
        "Ada",
    )
    command = decode(open_record.value)
    assert isinstance(command, ConversationCommand)
    assert (command.action, command.contact_name, command.workspace_id) == (
        "open",
        "Grace",
        tenant.workspace_id,
    )
    assert (command.conversation_id, command.channel, command.channel_id, command.chat_id) == (
        ids.conversation_id("api", app_id, quiet),
        "api",
        app_id,
        quiet,
    )
    assert announced == []
    # The handler writes no conversation: with no worker running, none exists yet.
    assert await db["conversations"].count_documents({"application_id": app_id}) == 0


async def test_a_new_conversation_with_bad_input_stores_and_sends_nothing(
    client: Client, settings: Settings, db: Db
) -> None:
    tenant = new_tenant(settings)
    app_id = (await _create(client, tenant))["id"]
    headers = {"X-Api-Key": (await _new_key(client, tenant, app_id))["key"]}
    url = f"{API}/{app_id}/conversations"
    conversation_id = ids.conversation_id("api", app_id, "u")
    async with (
        Tail(settings, MESSAGES_INBOUND) as inbound,
        Tail(settings, CONVERSATION_COMMANDS) as commands,
    ):
        malformed = await client.post(
            url, data=b"{", headers={**headers, "Content-Type": "application/json"}
        )
        assert malformed.status == 400
        assert (await malformed.json())["error"]["code"] == "malformed_json"
        for body in (
            {},
            {"external_user_id": 7},
            {"external_user_id": "u", "text": ""},
            {"external_user_id": "u", "name": "x" * 201},
            {"external_user_id": "u", "colour": "red"},
        ):
            response = await client.post(url, json=body, headers=headers)
            assert response.status == 422, body
            assert (await response.json())["error"]["details"]
        assert await db["conversations"].count_documents({"application_id": app_id}) == 0
        # Then good requests for the same user: the first record on each topic is theirs.
        opened = await client.post(
            url, json={"external_user_id": "u", "name": "Good"}, headers=headers
        )
        posted = await client.post(
            url, json={"external_user_id": "u", "text": "hi"}, headers=headers
        )
        assert (opened.status, posted.status) == (202, 202)
        first_command = decode((await commands.records(conversation_id, want=1))[0].value)
        first_message = decode((await inbound.records(conversation_id, want=1))[0].value)
    assert isinstance(first_command, ConversationCommand)
    assert (first_command.action, first_command.contact_name) == ("open", "Good")
    assert first_message.message_id == (await posted.json())["message_id"]


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    """A pipeline worker (its AI stage off): its message-process agent creates conversations."""
    with running(Worker(tmp_path, "apps-worker")) as started:
        yield started


async def test_the_pipeline_creates_a_repeatedly_opened_conversation_once(
    client: Client, settings: Settings, db: Db, worker: Worker
) -> None:
    tenant = new_tenant(settings)
    app_id = (await _create(client, tenant))["id"]
    headers = {"X-Api-Key": (await _new_key(client, tenant, app_id))["key"]}
    url = f"{API}/{app_id}/conversations"
    chat = f"crm-{uuid.uuid4().hex[:8]}"
    conversation_id = ids.conversation_id("api", app_id, chat)

    async def post(**body: Any) -> Document:
        response = await client.post(url, json={"external_user_id": chat, **body}, headers=headers)
        assert response.status == 202, await response.text()
        answer: Document = await response.json()
        assert answer["conversation_id"] == conversation_id
        return answer

    async with Tail(settings, CONVERSATION_EVENTS) as events:
        first = await post(name="Ada")
        await post(name="Ada")  # the server repeats itself before the pipeline has the first
        # An operator's command after both on the same partition: once it is applied, so are they.
        sentinel = ConversationCommand(
            message_id=ids.new_id("cmd"),
            conversation_id=conversation_id,
            workspace_id=tenant.workspace_id,
            application_id=app_id,
            channel="api",
            channel_id=app_id,
            chat_id=chat,
            action="assign",
        )
        await send_all(settings, CONVERSATION_COMMANDS, [sentinel])
        await events.until(conversation_id, lambda r: bool(_events(r, "conversation.assigned")))
        # Its first message, twice with the client's id, then one more to know both were taken.
        posted = [await post(text="Where is my order?", message_id="m-1") for _ in range(2)]
        last = await post(text="Any news?", message_id="m-2")

        def has_last(records: list[ConsumerRecord[Any, Any]]) -> bool:
            return any(
                e.subject_id == last["message_id"] for e in _events(records, "message.created")
            )

        seen = await events.until(conversation_id, has_last, within_s=30)
    assert first["created"] is True
    assert {p["created"] for p in posted} == {False}, "the pipeline had created it by then"
    assert posted[0]["message_id"] == posted[1]["message_id"]
    assert has_last(seen), "the worker did not take the last message"
    (created,) = _events(seen, "conversation.created")
    assert (created.subject_id, created.mode) == (conversation_id, "bot")
    conversations = await db["conversations"].find({"application_id": app_id}).to_list()
    assert [c["_id"] for c in conversations] == [conversation_id]
    (conversation,) = conversations
    assert (conversation["workspace_id"], conversation["channel"], conversation["mode"]) == (
        tenant.workspace_id,
        "api",
        "bot",
    )
    assert conversation["contact_name"] == "Ada"
    messages = await db["messages"].find({"conversation_id": conversation_id}).to_list()
    assert sorted((m["_id"], m["seq"]) for m in messages) == sorted(
        [(posted[0]["message_id"], 1), (last["message_id"], 2)]
    ), "the first message is the conversation's first, stored once"


async def test_the_pipelines_cached_config_follows_every_change(
    client: Client, settings: Settings, db: Db, redis: Redis
) -> None:
    tenant = new_tenant(settings)
    directory = ApplicationDirectory(db, redis, local_ttl_s=0)
    created = await _create(client, tenant, prompt="v1")
    app_id = created["id"]
    assert (await directory.get(app_id, tenant.workspace_id))["prompt"] == "v1"  # now cached
    url = f"{API}/{app_id}"
    assert (await client.patch(url, json={"prompt": "v2"}, headers=tenant.headers)).status == 200
    assert (await directory.get(app_id, tenant.workspace_id))["prompt"] == "v2"

    bot_id = f"bot_{uuid.uuid4().hex}"
    await db["chatbots"].insert_one(
        {
            "_id": bot_id,
            "workspace_id": tenant.workspace_id,
            "name": "Bot",
            "instructions": "Answer in French.",
            "llm": {"model": "m", "api_key": "enc:v1:sealed"},
        }
    )
    linked = await client.patch(url, json={"chatbot_id": bot_id}, headers=tenant.headers)
    assert linked.status == 200
    assert (await linked.json())["chatbot_id"] == bot_id
    config = await directory.get(app_id, tenant.workspace_id)
    assert config["chatbot"]["instructions"] == "Answer in French."
    assert config["chatbot"]["llm"]["api_key"] == "enc:v1:sealed"  # opened only by the AI stage

    assert (await client.delete(url, headers=tenant.headers)).status == 204
    with pytest.raises(UnknownApplication):
        await directory.get(app_id, tenant.workspace_id)


async def test_an_application_embedding_its_chatbot_is_read_as_it_is(
    settings: Settings, db: Db, redis: Redis
) -> None:
    workspace_id, other = f"ws_{uuid.uuid4().hex}", f"ws_{uuid.uuid4().hex}"
    embedded = f"app_{uuid.uuid4().hex}"
    await db["applications"].insert_one(
        {"_id": embedded, "workspace_id": workspace_id, "chatbot": {"instructions": "inline"}}
    )
    # A chatbot_id naming another workspace's chatbot embeds nothing.
    foreign_bot = f"bot_{uuid.uuid4().hex}"
    await db["chatbots"].insert_one(
        {"_id": foreign_bot, "workspace_id": other, "instructions": "theirs"}
    )
    linked = f"app_{uuid.uuid4().hex}"
    await db["applications"].insert_one(
        {"_id": linked, "workspace_id": workspace_id, "chatbot_id": foreign_bot}
    )
    directory = ApplicationDirectory(db, redis, local_ttl_s=0)
    got = await asyncio.gather(
        directory.get(embedded, workspace_id), directory.get(linked, workspace_id)
    )
    assert got[0]["chatbot"] == {"instructions": "inline"}
    assert "chatbot" not in got[1]
