from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from core.security.default_secrets import (
    DefaultSecret,
    default_secrets,
    off_local_stack,
    on_local_stack,
    refuse_defaults,
)
from core.settings import Settings

OWN = {
    "jwt_secret": SecretStr("j" * 40),
    "encryption_key": SecretStr("e" * 40),
    "s3_secret_key": SecretStr("s" * 40),
}
PUBLISHED = {field: Settings.model_fields[field].default for field in OWN}


def _settings(**values: Any) -> Settings:
    return Settings(**values)


def test_the_default_addresses_are_the_local_stack() -> None:
    assert on_local_stack(_settings(**PUBLISHED))


@pytest.mark.parametrize(
    "local",
    [
        {"kafka_url": "kafka://localhost:9092;kafka://127.0.0.2:9093"},
        {"mongo_url": "mongodb://user:pw@[::1]:27017,127.0.0.1:27018/?replicaSet=rs"},
        {"redis_url": "unix:///run/redis.sock"},
        {"s3_endpoint": "localhost"},
        {"web_host": "::1"},
    ],
)
def test_loopback_in_any_form_is_local(local: dict[str, str]) -> None:
    assert on_local_stack(_settings(**local))


@pytest.mark.parametrize(
    ("remote", "variable"),
    [
        ({"kafka_url": "kafka://127.0.0.1:9092;kafka://10.0.0.2:9092"}, "SWITCHBOARD_KAFKA_URL"),
        ({"mongo_url": "mongodb://127.0.0.1:1,db.example.com:2/"}, "SWITCHBOARD_MONGO_URL"),
        ({"mongo_url": "mongodb+srv://cluster.example.com/"}, "SWITCHBOARD_MONGO_URL"),
        ({"redis_url": "rediss://cache:6380/0"}, "SWITCHBOARD_REDIS_URL"),
        ({"s3_endpoint": "s3.amazonaws.com"}, "SWITCHBOARD_S3_ENDPOINT"),
        ({"web_host": "0.0.0.0"}, "SWITCHBOARD_WEB_HOST"),
        ({"gateway_host": "0.0.0.0"}, "SWITCHBOARD_GATEWAY_HOST"),
        ({"kafka_url": "kafka://localhost.example.com:9092"}, "SWITCHBOARD_KAFKA_URL"),
    ],
)
def test_any_other_address_is_not_local(remote: dict[str, str], variable: str) -> None:
    assert off_local_stack(_settings(**remote)) == [variable]


def test_defaults_are_named_by_their_variable() -> None:
    assert default_secrets(_settings(**PUBLISHED)) == [
        "SWITCHBOARD_JWT_SECRET",
        "SWITCHBOARD_ENCRYPTION_KEY",
        "SWITCHBOARD_S3_SECRET_KEY",
    ]
    assert default_secrets(_settings(**OWN)) == []


def test_off_the_local_stack_a_default_is_refused() -> None:
    secrets = {**OWN, "encryption_key": PUBLISHED["encryption_key"]}
    settings = _settings(web_host="0.0.0.0", **secrets)
    with pytest.raises(DefaultSecret) as refused:
        refuse_defaults(settings)
    assert str(refused.value).startswith(
        "SWITCHBOARD_ENCRYPTION_KEY has its published default value; set it"
    )
    assert "SWITCHBOARD_WEB_HOST" in str(refused.value)


def test_own_secrets_or_the_local_stack_pass() -> None:
    refuse_defaults(_settings(web_host="0.0.0.0", **OWN))
    refuse_defaults(_settings(**PUBLISHED))
