"""The API channel end to end: a tenant's server posts its users' messages with an API key, a
real worker (the demo model answering) and the platform sender POST every bot and operator
message to the tenant's receiver, signed with the secret shown once at connect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core import ids
from core.ai.llm import DEMO_PREFIX
from core.channels import standard_webhooks
from core.ids import new_id
from core.settings import Settings
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.api_harness import operator_headers
from tests.integration.channel_harness import until
from tests.integration.pipeline_harness import Worker, running
from web import applications, bots, conversations

pytestmark = pytest.mark.asyncio(loop_scope="module")

Client = TestClient[web.Request, web.Application]
USERS = [f"customer-{n}" for n in range(50)]


@dataclass(frozen=True)
class Tenant:
    application_id: str
    api_key: str
    channel: dict[str, Any]
    workspace_id: str
    applications: Client
    conversations: Client
    bots: Client
    admin: dict[str, str]

    async def say(self, user: str, text: str, message_id: str) -> None:
        response = await self.applications.post(
            f"/api/apps/{self.application_id}/conversations",
            json={"external_user_id": user, "text": text, "message_id": message_id},
            headers={"X-Api-Key": self.api_key},
        )
        assert response.status == 202, await response.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    # Its secret is replaced by the one the channel shows at connect.
    async with WebhookReceiver(standard_webhooks.new_secret()) as started:
        yield started


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    env = {"SWITCHBOARD_CHANNEL_ALLOW_NETWORKS": "127.0.0.0/8"}
    logs = tmp_path_factory.mktemp("api-channel")
    with running(Worker(logs, "api-channel-worker", ai=True, sender=True, env=env)) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenant(
    settings: Settings, receiver: WebhookReceiver, worker: Worker
) -> AsyncIterator[Tenant]:
    local = settings.model_copy(update={"channel_allow_networks": "127.0.0.0/8"})
    workspace = new_id("ws")
    admin = operator_headers(settings, workspace, "admin")
    async with (
        TestClient(TestServer(applications.create_app(local))) as apps,
        TestClient(TestServer(bots.create_app(local))) as channels,
        TestClient(TestServer(conversations.create_app(local))) as inbox,
    ):
        made = await apps.post("/api/apps", json={"name": "shop backend"}, headers=admin)
        application = (await made.json())["id"]
        key = await apps.post(f"/api/apps/{application}/keys", json={}, headers=admin)
        connected = await channels.post(
            "/api/channels",
            json={"type": "api", "application_id": application,
                  "credentials": {"url": receiver.url}},
            headers=admin,
        )  # fmt: skip
        assert connected.status == 201, await connected.text()
        channel = await connected.json()
        receiver.secret = channel.pop("signing_secret")
        yield Tenant(
            application, (await key.json())["key"], channel, workspace, apps, inbox, channels, admin
        )


def _texts(receiver: WebhookReceiver, user: str) -> list[tuple[str, str]]:
    return [
        (r.body["data"]["role"], r.body["data"]["text"])
        for r in receiver.received
        if r.body["data"]["external_user_id"] == user
    ]


def _demo(text: str) -> tuple[str, str]:
    return ("bot", f"{DEMO_PREFIX}You said: {text}. Configure a model to get real answers.")


async def test_fifty_users_interleaved_get_their_answers_in_order_signed(
    tenant: Tenant, receiver: WebhookReceiver
) -> None:
    for turn in range(2):
        for user in USERS:
            await tenant.say(user, f"{user} asks {turn}", f"{user}-{turn}")
    await until(lambda: all(len(_texts(receiver, user)) >= 2 for user in USERS), 180, "100 answers")
    for user in USERS:
        assert _texts(receiver, user) == [_demo(f"{user} asks {turn}") for turn in range(2)]
    assert receiver.refused == []  # every request signed with the secret shown at connect
    ids_seen = [r.id for r in receiver.received]
    assert len(ids_seen) == len(set(ids_seen))
    first = receiver.received[0].body
    assert first["type"] == "message.created"
    assert first["data"]["application_id"] == tenant.application_id
    assert first["data"]["in_reply_to"].startswith("in_")


async def test_an_operator_takes_over_and_the_reply_reaches_the_receiver(
    settings: Settings, tenant: Tenant, receiver: WebhookReceiver
) -> None:
    user = "customer-needs-a-human"
    await tenant.say(user, "a human please", "human-1")
    await until(lambda: _texts(receiver, user), 60, "the bot's answer")
    conversation = ids.conversation_id("api", tenant.application_id, user)
    operator = operator_headers(settings, tenant.workspace_id, "agent")
    for path, body in (("takeover", {}), ("reply", {"text": "Ana here, how can I help?"})):
        response = await tenant.conversations.post(
            f"/api/conversations/{conversation}/{path}", json=body, headers=operator
        )
        assert response.status == 202, await response.text()
    await until(lambda: len(_texts(receiver, user)) >= 2, 60, "the operator's reply")
    assert _texts(receiver, user) == [
        _demo("a human please"),
        ("operator", "Ana here, how can I help?"),
    ]


async def test_the_signing_secret_is_never_shown_again(tenant: Tenant) -> None:
    for path in (f"/api/channels/{tenant.channel['id']}", "/api/channels"):
        response = await tenant.bots.get(path, headers=tenant.admin)
        assert response.status == 200
        assert "whsec_" not in await response.text()
