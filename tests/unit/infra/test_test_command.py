"""`switchboard test` (what `make test` runs): services up first, pytest's own exit status, and
only what it started is stopped afterwards. The local services are stood in for; pytest is real.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

import infra.stack
from core.settings import Settings
from infra.cli import main


class _Stack:
    def __init__(self, started: list[str]) -> None:
        self.started = started
        self.stopped: list[list[str]] = []

    def up(self, settings: Settings, names: Iterable[str] = ()) -> list[str]:
        return self.started

    def down(self, settings: Settings, names: Iterable[str] = ()) -> list[str]:
        self.stopped.append(list(names))
        return list(names)


def _stack(monkeypatch: pytest.MonkeyPatch, started: list[str]) -> _Stack:
    # The inner pytest needs none of the installed plugins (loading them takes seconds).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    stack = _Stack(started)
    monkeypatch.setattr(infra.stack, "up", stack.up)
    monkeypatch.setattr(infra.stack, "down", stack.down)
    return stack


def _suite(tmp_path: Path, body: str) -> str:
    (tmp_path / "test_probe.py").write_text(f"def test_probe():\n    {body}\n")
    return str(tmp_path / "test_probe.py")


def test_exits_with_pytests_status_after_stopping_what_it_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = _stack(monkeypatch, ["kafka", "redis"])
    code = main(["test", "--", "-q", "-p", "no:cacheprovider", _suite(tmp_path, "assert False")])
    assert code == 1
    assert stack.stopped == [["kafka", "redis"]]


def test_passes_through_pytests_other_statuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stack(monkeypatch, [])
    suite = _suite(tmp_path, "pass")
    assert main(["test", "--", "-q", "-p", "no:cacheprovider", suite]) == 0
    assert main(["test", "--", "-q", "-p", "no:cacheprovider", suite, "-k", "nothing"]) == 5


def test_stops_nothing_it_found_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = _stack(monkeypatch, [])
    assert main(["test", "--", "-q", "-p", "no:cacheprovider", _suite(tmp_path, "pass")]) == 0
    assert stack.stopped == []
