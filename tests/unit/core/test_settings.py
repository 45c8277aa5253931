from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import SERVICES, Settings


def test_defaults_point_at_the_local_stack() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.mongo_port == 27017
    assert settings.redis_port == 6379
    assert settings.s3_port == 9000
    assert settings.gateway_url == "http://localhost:8080"


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_KAFKA_URL", "kafka://10.0.0.1:9192;kafka://10.0.0.2:9192")
    monkeypatch.setenv("SWITCHBOARD_WEB_BASE_PORT", "9100")
    settings = Settings()
    assert settings.kafka_bootstrap == "10.0.0.1:9192,10.0.0.2:9192"
    assert settings.kafka_port == 9192
    assert settings.service_port("users") == 9100


def test_each_service_has_its_own_port() -> None:
    settings = Settings()
    ports = [settings.service_port(service) for service in SERVICES]
    assert ports == list(range(8100, 8100 + len(SERVICES)))
    assert settings.service_url("socket") == "http://127.0.0.1:8107"


def test_secrets_are_not_printed() -> None:
    settings = Settings(jwt_secret="top-secret-value")
    assert "top-secret-value" not in repr(settings)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(web_base_port=0)
    with pytest.raises(ValidationError):
        Settings(readiness_timeout=-1)
