from __future__ import annotations

import pytest

from core.settings import SERVICES
from infra.cli import build_parser


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
