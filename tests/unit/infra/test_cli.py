from __future__ import annotations

from pathlib import Path

import pytest

from core.security.local_secrets import SECRET_FIELDS
from core.settings import SERVICES
from infra.cli import build_parser, main


def _commands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


def test_only_working_commands_exist() -> None:
    assert _commands() == {"worker", "web", "up", "down", "status", "run", "replay", "test"}


def test_web_accepts_each_service_and_all() -> None:
    parser = build_parser()
    for name in (*SERVICES, "all"):
        assert parser.parse_args(["web", name]).service == name
    with pytest.raises(SystemExit):
        parser.parse_args(["web", "nonexistent"])


def test_up_takes_service_names() -> None:
    assert build_parser().parse_args(["up", "kafka", "redis"]).services == ["kafka", "redis"]


@pytest.fixture
def off_the_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings with a remote Kafka, no secret set, and an empty state directory."""
    monkeypatch.setenv("SWITCHBOARD_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_KAFKA_URL", "kafka://kafka.example.com:9092")
    for variable in SECRET_FIELDS.values():
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def test_off_the_local_stack_a_default_secret_starts_nothing(
    off_the_local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["web", "users"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: SWITCHBOARD_JWT_SECRET has its published default value")
    assert "SWITCHBOARD_KAFKA_URL" in error
    assert list(off_the_local_stack.iterdir()) == []


def test_stopping_is_always_allowed(
    off_the_local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["down"]) == 0
    assert "nothing was running" in capsys.readouterr().out
