"""A tenant points its chatbot's model at its own server, at the cloud's metadata address or
at a port of the platform's own network, or asks the platform's key for a model it was not
offered. The platform's key must reach only the platform's model, and the worker must POST
only where the egress guard allows, redirects included.

Each probe saves the chatbot through the chatbots API (refused), then stores it as the API
never would (straight into MongoDB, as a chatbot saved before the rules) and runs a turn in a
real worker: the listeners must see no request, or none carrying the platform's key.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from core.ids import new_id
from core.settings import Settings
from streams.contract import CONVERSATION_EVENTS, MESSAGES_INBOUND
from streams.replay import conversation_records
from tests.integration.api_harness import new_tenant
from tests.integration.pipeline_harness import (
    Collector,
    Conversation,
    Worker,
    create_application,
    running,
    send_all,
)
from web import chatbots

Client = TestClient[web.Request, web.Application]

PLATFORM_KEY = "sk-platform-probe-secret-key"
PLATFORM_MODEL = "platform-small"
PLATFORM_CAP = 512
FALLBACK = "We will get back to you shortly."
#: The tenant's own listener: loopback, but allowed to this worker (llm_allow_networks).
ALLOWED_HOST = "127.0.0.1"
#: Loopback, and not allowed: the platform's internal network as a tenant would aim at it.
INWARD_HOST = "127.0.0.2"
#: The platform's own model server (the operator's choice, so never restricted).
PLATFORM_HOST = "127.0.0.3"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


PLATFORM_PORT = _free_port(PLATFORM_HOST)


def _platform(settings: Settings) -> Settings:
    """The worker's and the API's settings: a platform model with a key, a cap, one network."""
    return settings.model_copy(
        update={
            "llm_base_url": f"http://{PLATFORM_HOST}:{PLATFORM_PORT}/v1",
            "llm_api_key": SecretStr(PLATFORM_KEY),
            "llm_model": PLATFORM_MODEL,
            "llm_platform_max_tokens": PLATFORM_CAP,
            "llm_allow_networks": f"{ALLOWED_HOST}/32",
        }
    )


@pytest.fixture(scope="module")
def model_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    env = {
        "SWITCHBOARD_LLM_BASE_URL": f"http://{PLATFORM_HOST}:{PLATFORM_PORT}/v1",
        "SWITCHBOARD_LLM_API_KEY": PLATFORM_KEY,
        "SWITCHBOARD_LLM_MODEL": PLATFORM_MODEL,
        "SWITCHBOARD_LLM_PLATFORM_MAX_TOKENS": str(PLATFORM_CAP),
        "SWITCHBOARD_LLM_ALLOW_NETWORKS": f"{ALLOWED_HOST}/32",
    }
    worker = Worker(tmp_path_factory.mktemp("model"), "model-worker", ai=True, env=env)
    with running(worker) as started:
        yield started


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(chatbots.create_app(_platform(settings)))) as client:
        yield client


class Listener:
    """An HTTP server that records every request; it answers as a model, or redirects."""

    def __init__(self, host: str, port: int = 0, redirect_to: str | None = None) -> None:
        self.host, self.port = host, port
        self.redirect_to = redirect_to
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _any(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, dict(request.headers), body))
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        return web.json_response(
            {
                "id": "chatcmpl-probe",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": (body or {}).get("model", "x"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "listener answered"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        )

    async def __aenter__(self) -> Listener:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def saw_platform_key(self) -> bool:
        return any(PLATFORM_KEY in str(headers) for _, _, headers, _ in self.requests)

    def about(self, conversation_id: str) -> list[tuple[str, str, dict[str, str], Any]]:
        """The requests of one probe's turn (the platform's server also answers other tests'
        conversations that a worker in the shared consumer group picks up)."""
        return [r for r in self.requests if conversation_id in str(r[3])]


async def _turn(settings: Settings, llm: dict[str, Any]) -> tuple[list[str], dict[str, Any], str]:
    """One turn of a chatbot stored as the API would refuse it: the answers, the turn and the
    conversation's id (which the user's message carries)."""
    workspace = new_id("ws")
    chatbot = {"fallback_reply": FALLBACK, "llm": {"timeout_s": 2, **llm}}
    application = await create_application(settings, workspace, chatbot=chatbot)
    conversation = Conversation(workspace, application, "probe")
    async with Collector(settings, {conversation.id}) as collector:
        message = conversation.message("1", f"hello from {conversation.id}")
        await send_all(settings, MESSAGES_INBOUND, [message])
        await collector.wait_for(1, within_s=60)
    records = await conversation_records(settings, conversation.id, topics=[CONVERSATION_EVENTS])
    (turn,) = [
        r.value
        for r in records
        if isinstance(r.value, dict) and str(r.value.get("type", "")).startswith("turn.")
    ]
    return [s.text for s in collector.sends[conversation.id]], turn, conversation.id


async def _save(
    client: Client, settings: Settings, llm: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    tenant = new_tenant(settings)
    response = await client.post(
        "/api/chatbots", json={"name": "probe", "llm": llm}, headers=tenant.headers
    )
    return response.status, await response.json()


async def test_a_tenant_url_without_its_own_key_never_receives_the_platform_key(
    settings: Settings, model_worker: Worker, client: Client
) -> None:
    async with Listener(ALLOWED_HOST) as tenant_server:
        llm = {"base_url": tenant_server.base_url, "model": "any"}
        answers, turn, _ = await _turn(settings, llm)
    assert not tenant_server.saw_platform_key(), "the platform's key reached a tenant's server"
    assert tenant_server.requests == []
    assert answers == [FALLBACK]
    assert turn["type"] == "turn.failed"
    assert "own api_key" in turn["data"]["failure"]

    status, body = await _save(client, settings, llm)
    assert status == 422, body
    assert body["error"]["code"] == "model_refused"
    assert body["error"]["details"][0]["field"] == "llm.api_key"


@pytest.mark.parametrize("target", ["metadata", "loopback"])
async def test_an_inward_model_url_is_refused_on_save_and_never_posted_to(
    settings: Settings, model_worker: Worker, client: Client, target: str
) -> None:
    async with Listener(INWARD_HOST) as inward:
        url = "http://169.254.169.254/v1" if target == "metadata" else inward.base_url
        llm = {"base_url": url, "model": "any", "api_key": "sk-tenant-own"}
        answers, turn, _ = await _turn(settings, llm)
    assert inward.requests == [], "the worker called an inward address"
    assert answers == [FALLBACK]
    reason = "link-local" if target == "metadata" else "loopback"
    assert reason in turn["data"]["failure"]

    status, body = await _save(client, settings, llm)
    assert status == 403, body
    assert body["error"]["code"] == "model_endpoint_refused"
    assert body["error"]["details"][0]["field"] == "llm.base_url"


async def test_a_redirect_to_an_inward_address_is_not_followed(
    settings: Settings, model_worker: Worker
) -> None:
    async with Listener(INWARD_HOST) as inward:
        target = f"{inward.base_url}/chat/completions"
        async with Listener(ALLOWED_HOST, redirect_to=target) as redirector:
            llm = {"base_url": redirector.base_url, "model": "any", "api_key": "sk-tenant-own"}
            answers, turn, _ = await _turn(settings, llm)
    assert len(redirector.requests) >= 1
    assert inward.requests == [], "the redirect was followed to an inward address"
    assert answers == [FALLBACK]
    assert turn["type"] == "turn.failed"


async def test_the_platform_key_gives_only_the_models_and_tokens_offered(
    settings: Settings, model_worker: Worker, client: Client
) -> None:
    async with Listener(PLATFORM_HOST, PLATFORM_PORT) as platform:
        answers, turn, refused = await _turn(settings, {"model": "gpt-expensive"})
        assert platform.about(refused) == [], "the platform served a model it does not offer"
        assert answers == [FALLBACK]
        assert "not offered" in turn["data"]["failure"]

        # What is offered works, with max_tokens held to the cap whatever was stored.
        answers, turn, offered = await _turn(settings, {"max_tokens": 1_000_000})
    assert answers == ["listener answered"]
    ((_, _, headers, sent),) = platform.about(offered)
    assert headers["Authorization"] == f"Bearer {PLATFORM_KEY}"
    assert (sent["model"], sent["max_tokens"]) == (PLATFORM_MODEL, PLATFORM_CAP)

    status, body = await _save(client, settings, {"model": "gpt-expensive"})
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "llm.model"
    status, body = await _save(client, settings, {"max_tokens": PLATFORM_CAP + 1})
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "llm.max_tokens"
    status, body = await _save(client, settings, {"max_tokens": PLATFORM_CAP})
    assert status == 201, body


async def test_a_lookalike_of_the_platform_url_is_a_tenant_url(
    settings: Settings, model_worker: Worker
) -> None:
    """Only the platform's URL itself (normalised) gets its key; another spelling does not."""
    async with Listener(PLATFORM_HOST, PLATFORM_PORT) as platform:
        spelled = f"HTTP://{PLATFORM_HOST}:{PLATFORM_PORT}/v1/"
        answers, _, same = await _turn(settings, {"base_url": spelled})
        assert answers == ["listener answered"], "the same URL, normalised, is the platform's"
        other = f"http://{PLATFORM_HOST}:{PLATFORM_PORT}/v1/../v1"
        answers, turn, lookalike = await _turn(settings, {"base_url": other})
    assert len(platform.about(same)) == 1
    assert platform.about(lookalike) == []
    assert answers == [FALLBACK]
    assert "own api_key" in turn["data"]["failure"]
