"""What a tenant may ask of the platform's model, decided the same on save and at call time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from core.ai.llm import ModelSettings, is_platform_url, normalised_url
from core.ai.model_policy import ModelEndpointRefused, ModelPolicy, ModelRefused
from core.settings import Settings

PLATFORM_URL = "https://llm.platform.test/v1"
SETTINGS = Settings(
    llm_base_url=PLATFORM_URL,
    llm_api_key=SecretStr("sk-platform"),
    llm_model="small",
    llm_platform_models="small, medium",
    llm_workspace_models={"ws_big": ["large"]},
    llm_platform_max_tokens=1000,
)
POLICY = ModelPolicy(SETTINGS)


@pytest.mark.parametrize(
    "spelled",
    [PLATFORM_URL, "HTTPS://LLM.Platform.test/v1/", "https://llm.platform.test:443/v1"],
)
def test_the_platform_url_is_recognised_however_it_is_spelled(spelled: str) -> None:
    assert is_platform_url(spelled, SETTINGS)


@pytest.mark.parametrize(
    "other",
    [
        "http://llm.platform.test/v1",  # another scheme
        "https://llm.platform.test:8443/v1",
        "https://llm.platform.test/v2",
        "https://user@llm.platform.test/v1",
        "https://llm.platform.test/v1?x=1",
        "https://llm.platform.test.evil.test/v1",
    ],
)
def test_any_other_url_is_not_the_platforms(other: str) -> None:
    assert not is_platform_url(other, SETTINGS)
    assert normalised_url(other) != normalised_url(PLATFORM_URL)


def test_the_platform_key_goes_only_to_the_platform_url() -> None:
    own = ModelSettings.resolve({"base_url": "https://mine.test/v1", "model": "m"}, SETTINGS)
    platform = ModelSettings.resolve({"model": "small"}, SETTINGS)
    assert own is not None
    assert platform is not None
    assert own.api_key == "unused"
    assert platform.api_key == "sk-platform"


def _fields(refused: pytest.ExceptionInfo[ModelRefused]) -> list[str]:
    details: Any = refused.value.details
    return [d["field"] for d in details]


def test_an_own_url_needs_an_own_key_on_save_and_at_call_time() -> None:
    llm = {"base_url": "https://mine.test/v1", "model": "anything"}
    with pytest.raises(ModelRefused) as on_save:
        POLICY.check(llm, "ws_1")
    assert _fields(on_save) == ["llm.api_key"]
    with pytest.raises(ModelRefused, match="own api_key"):
        POLICY.resolve(llm, "ws_1")
    resolved = POLICY.resolve({**llm, "api_key": "sk-mine"}, "ws_1")
    assert resolved is not None
    assert resolved.egress is POLICY.egress, "a tenant's URL is called through the guard"
    assert (resolved.api_key, resolved.model, resolved.max_tokens) == ("sk-mine", "anything", None)


def test_on_the_platform_only_the_models_offered() -> None:
    with pytest.raises(ModelRefused) as refused:
        POLICY.check({"model": "large"}, "ws_1")
    assert _fields(refused) == ["llm.model"]
    with pytest.raises(ModelRefused, match="not offered"):
        POLICY.resolve({"model": "large"}, "ws_1")
    POLICY.check({"model": "large"}, "ws_big")  # offered to that workspace
    POLICY.check({"model": "medium"}, "ws_1")
    POLICY.check({}, "ws_1")  # the platform's own model


def test_the_default_offer_is_the_platform_model_alone() -> None:
    policy = ModelPolicy(SETTINGS.model_copy(update={"llm_platform_models": ""}))
    assert policy.models_offered("ws_1") == {"small"}
    with pytest.raises(ModelRefused):
        policy.check({"model": "medium"}, "ws_1")


def test_max_tokens_is_refused_over_the_cap_on_save_and_capped_at_call_time() -> None:
    with pytest.raises(ModelRefused) as refused:
        POLICY.check({"max_tokens": 1001}, "ws_1")
    assert _fields(refused) == ["llm.max_tokens"]
    resolved = [POLICY.resolve({"max_tokens": n}, "ws_1") for n in (50_000, None, 10)]
    assert [r.max_tokens if r else "none" for r in resolved] == [1000, 1000, 10]
    assert all(r is not None and r.egress is None for r in resolved), "the operator's URL"


def test_a_tenant_key_on_the_platform_url_is_the_tenants_account() -> None:
    llm = {"model": "large", "api_key": "sk-mine", "max_tokens": 50_000}
    POLICY.check(llm, "ws_1")
    resolved = POLICY.resolve(llm, "ws_1")
    assert resolved is not None
    assert (resolved.api_key, resolved.max_tokens) == ("sk-mine", 50_000)


def test_a_keyless_platform_url_is_the_platforms_account_whatever_key_is_sent() -> None:
    """A local server takes any key: a made-up key must not lift the rules."""
    keyless = ModelPolicy(SETTINGS.model_copy(update={"llm_api_key": None}))
    with pytest.raises(ModelRefused):
        keyless.check({"model": "large", "api_key": "made-up"}, "ws_1")


def test_without_a_model_anywhere_nothing_is_refused() -> None:
    policy = ModelPolicy(Settings())
    policy.check({"model": "whatever"}, "ws_1")
    assert policy.resolve({"model": "whatever"}, "ws_1") is None  # the demo answers


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/v1", "http://127.0.0.1:8100/v1", "http://10.0.0.5/v1"]
)
async def test_an_inward_own_url_is_refused(url: str) -> None:
    with pytest.raises(ModelEndpointRefused) as refused:
        await POLICY.check_endpoint({"base_url": url, "api_key": "k"})
    assert refused.value.status == 403
    await ModelPolicy(
        SETTINGS.model_copy(update={"llm_allow_networks": "127.0.0.1/32"})
    ).check_endpoint({"base_url": "http://127.0.0.1:8100/v1"})


async def test_the_platform_url_is_never_checked() -> None:
    loopback = SETTINGS.model_copy(update={"llm_base_url": "http://127.0.0.1:8080/v1"})
    await ModelPolicy(loopback).check_endpoint({"base_url": "http://127.0.0.1:8080/v1/"})
