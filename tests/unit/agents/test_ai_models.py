"""Which model a chatbot gets: its sealed API key is opened only to make the call, the
platform's key goes only to the platform's URL, and the clients kept are bounded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from pydantic import SecretStr

from agents.ai_agent import Models
from core.ai.llm import Completion, Message, ModelSettings, OnDelta, ToolSpec, Usage
from core.ai.model_policy import ModelRefused, RefusedModel
from core.ai.model_thread import ModelThread
from core.security.secrets import SecretBox, SecretUnreadable
from core.settings import Settings

BOX = SecretBox("unit-test-key")
PLATFORM = Settings(
    llm_base_url="http://llm.test/v1", llm_model="m", llm_api_key=SecretStr("default")
)


def _deps(settings: Settings = PLATFORM) -> Any:
    return cast(Any, SimpleNamespace(settings=settings, secrets=BOX))


def _llm(**fields: Any) -> dict[str, Any]:
    return {"llm": {"base_url": "http://llm.test/v1", "model": "m", **fields}}


@pytest.mark.parametrize(
    ("api_key", "used"),
    [(BOX.seal("sk-tenant"), "sk-tenant"), ("sk-plain", "sk-plain"), (None, "default")],
)
def test_the_chatbots_key_is_opened_when_sealed(api_key: str | None, used: str) -> None:
    models = Models()
    models.for_chatbot(_llm(api_key=api_key), _deps())
    assert [settings.api_key for settings in models._clients] == [used]


def test_another_url_without_a_key_of_its_own_is_refused() -> None:
    models = Models()
    model = models.for_chatbot(_llm(base_url="http://llm.elsewhere.test/v1"), _deps())
    assert isinstance(model, RefusedModel)
    assert not models._clients
    with pytest.raises(ModelRefused, match="own api_key"):
        asyncio.run(model.complete([{"role": "user", "content": "hi"}], []))


def test_a_key_sealed_with_another_encryption_key_is_refused() -> None:
    with pytest.raises(SecretUnreadable):
        Models().for_chatbot(_llm(api_key=SecretBox("other").seal("sk")), _deps())


def test_the_chatbot_config_is_left_as_it_was() -> None:
    chatbot = _llm(api_key=BOX.seal("sk-tenant"))
    sealed = chatbot["llm"]["api_key"]
    Models().for_chatbot(chatbot, _deps())
    assert chatbot["llm"]["api_key"] == sealed


class Client:
    """A model client that records being closed; a call on "wait" waits for ``release``."""

    made: ClassVar[list[Client]] = []

    def __init__(self, settings: ModelSettings) -> None:
        self.label = settings.model
        self.parameters: dict[str, Any] = {}
        self.closed = threading.Event()
        self.release = threading.Event()
        Client.made.append(self)

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        assert not self.closed.is_set(), "called after being closed"
        if messages[-1]["content"] == "wait":
            await asyncio.to_thread(self.release.wait, 5)
        return Completion("ok", (), "stop", Usage(1, 1), self.label, 0.0)

    async def close(self) -> None:
        self.closed.set()


@pytest.fixture
def thread() -> Iterator[ModelThread]:
    Client.made = []
    models = ModelThread("test-models")
    yield models
    models.stop()


def _config(n: int) -> dict[str, Any]:
    return {"llm": {"base_url": f"http://93.184.215.{n}/v1", "model": "m", "api_key": "k"}}


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not so within 2s")


async def test_no_more_clients_than_the_bound_stay_open(thread: ModelThread) -> None:
    models = Models(thread=thread, max_clients=3, make_client=Client)
    hi: list[Message] = [{"role": "user", "content": "hi"}]
    for n in range(10):
        await models.for_chatbot(_config(n), _deps()).complete(hi, [])
        assert thread.open_models <= 3
    await _until(lambda: sum(not c.closed.is_set() for c in Client.made) == 3)
    assert len(Client.made) == 10
    assert all(c.closed.is_set() for c in Client.made[:7]), "the evicted ones are closed"
    assert len(models._clients) == 3


async def test_a_recently_used_client_is_kept(thread: ModelThread) -> None:
    models = Models(thread=thread, max_clients=2, make_client=Client)
    hi: list[Message] = [{"role": "user", "content": "hi"}]
    first = models.for_chatbot(_config(1), _deps())
    await first.complete(hi, [])
    await models.for_chatbot(_config(2), _deps()).complete(hi, [])
    assert models.for_chatbot(_config(1), _deps()) is first
    await models.for_chatbot(_config(3), _deps()).complete(hi, [])  # evicts 2, not 1
    await _until(lambda: Client.made[1].closed.is_set())
    assert not Client.made[0].closed.is_set()


async def test_an_evicted_client_is_closed_only_once_its_call_ends(thread: ModelThread) -> None:
    models = Models(thread=thread, max_clients=1, make_client=Client)
    busy = models.for_chatbot(_config(1), _deps())
    call = asyncio.create_task(busy.complete([{"role": "user", "content": "wait"}], []))
    await _until(lambda: len(Client.made) == 1)
    await models.for_chatbot(_config(2), _deps()).complete([{"role": "user", "content": "hi"}], [])
    await asyncio.sleep(0.1)
    assert not Client.made[0].closed.is_set(), "closed under a running call"
    Client.made[0].release.set()
    assert (await call).text == "ok"
    await _until(lambda: Client.made[0].closed.is_set())
    assert not Client.made[1].closed.is_set()
