"""Which model a chatbot gets: its sealed API key is opened only to make the call."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import SecretStr

from agents.ai_agent import Models
from core.security.secrets import SecretBox, SecretUnreadable
from core.settings import Settings

BOX = SecretBox("unit-test-key")


def _deps() -> Any:
    return cast(
        Any, SimpleNamespace(settings=Settings(llm_api_key=SecretStr("default")), secrets=BOX)
    )


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


def test_a_key_sealed_with_another_encryption_key_is_refused() -> None:
    with pytest.raises(SecretUnreadable):
        Models().for_chatbot(_llm(api_key=SecretBox("other").seal("sk")), _deps())


def test_the_chatbot_config_is_left_as_it_was() -> None:
    chatbot = _llm(api_key=BOX.seal("sk-tenant"))
    sealed = chatbot["llm"]["api_key"]
    Models().for_chatbot(chatbot, _deps())
    assert chatbot["llm"]["api_key"] == sealed
